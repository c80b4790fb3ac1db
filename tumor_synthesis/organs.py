"""Organ profiles: everything organ-specific about tumor synthesis, as data.

Adding an organ is adding an :class:`OrganProfile` entry to :data:`PROFILES`; the engine
and the transform read nothing organ-specific from anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tumor_synthesis.sizes import TUMOR_TYPES
from tumor_synthesis.texture import TextureConfig


@dataclass(frozen=True)
class OrganProfile:
    """How tumors of one organ look and where they go.

    Attributes:
        name: organ name (lower case).
        window: (a_min, a_max) HU window that ``ScaleIntensityRanged`` maps to [0, 1].
        class_names: names of the label values 0, 1, 2, ... of the single-organ convention.
        organ_label: label value of the organ (single-organ convention: 1).
        tumor_label: label value given to synthetic tumor voxels (2).
        tumor_types: tumor types (keys of ``sizes.TUMOR_TYPES``) a sample can draw.
        type_probabilities: default probability of each entry of ``tumor_types``.
        intensity_sign: -1 when tumors are darker than the organ (hypo-attenuating liver
            tumors), +1 when brighter.
        difference_hu: uniform range of the tumor's intensity difference at full texture
            and full mask, in HU.
        edge_blur_mm: uniform range of the sigma (mm) of the Gaussian that softens the
            tumor mask before it scales the intensity change.
        placement_band: (low, high) fraction of the organ's z extent for tumor centres.
        erosion_radius_mm: in-plane half-width (mm) of the erosion applied to the centre's
            slice (2 mm: the original's 5x5 kernel at 1 mm).
        texture: laws of the texture parameters.
    """

    name: str
    window: tuple[float, float]
    class_names: tuple[str, ...]
    organ_label: int = 1
    tumor_label: int = 2
    tumor_types: tuple[str, ...] = ("tiny", "small", "medium", "large", "mix")
    type_probabilities: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
    intensity_sign: int = -1
    difference_hu: tuple[float, float] = (65.0, 145.0)
    edge_blur_mm: tuple[float, float] = (1.0, 2.0)
    placement_band: tuple[float, float] = (0.3, 0.7)
    erosion_radius_mm: float = 2.0
    texture: TextureConfig = field(default_factory=TextureConfig)

    def __post_init__(self):
        unknown = [t for t in self.tumor_types if t not in TUMOR_TYPES]
        if unknown:
            raise ValueError(f"organ profile {self.name!r}: unknown tumor types {unknown}")
        if len(self.type_probabilities) != len(self.tumor_types):
            raise ValueError(f"organ profile {self.name!r}: one probability per tumor type is needed")
        if self.intensity_sign not in (-1, 1):
            raise ValueError(f"organ profile {self.name!r}: intensity_sign must be -1 or +1")


#: Known organs. Liver: the values of Hu et al. (CVPR 2023).
PROFILES: dict[str, OrganProfile] = {
    "liver": OrganProfile(
        name="liver",
        window=(-21.0, 189.0),
        class_names=("background", "liver", "tumor"),
    ),
}


def available_organs() -> tuple[str, ...]:
    """Names accepted by :func:`get_organ_profile`."""
    return tuple(PROFILES)


def get_organ_profile(name: str) -> OrganProfile:
    """The profile of organ ``name`` (case-insensitive).

    Raises:
        ValueError: for an unknown organ, listing the known ones.
    """
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"no tumor synthesis profile for organ {name!r}; available: {list(PROFILES)}")
    return PROFILES[key]
