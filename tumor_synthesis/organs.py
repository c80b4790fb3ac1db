"""Organ profiles: everything organ-specific about tumor synthesis, as data.

Adding an organ is adding an :class:`OrganProfile` entry to :data:`PROFILES`; the engine
and the transform read nothing organ-specific from anywhere else.

Presets (:data:`PRESETS`): "original" is every profile as published; a profile's ``presets``
maps another name ("realistic") to a :class:`Preset`, the values it replaces for each model
(:func:`with_preset`, :func:`preset_of`). Only the liver has realistic values
(:data:`LIVER_REALISTIC`; why each: docs/reference/organ-profiles.md).

Organs (sources: REFERENCE.md section 5):

* ``liver``: Hu et al. (CVPR 2023), every value of the original.
* ``pancreas`` and ``kidney``: hypo-attenuating tumors with DiffTumor's (CVPR 2024) laws:
  early (1-3 tiny or small) tumors 0.8, one medium 0.1, one large 0.1; centres in the
  30-70 % z band, widening to 20-80, 10-90 and 0-100 % after failed draws; large
  pancreas tumors at the organ's centre; medium and large kidney tumors left unclipped
  half the time (exophytic: they grow out of the kidney into the neighbouring soft
  tissue, never into air or another labelled structure). Window -175..250 HU.
* ``lung``: pulmonary nodules, BRIGHTER than the lung. A difference drawn in HU, as for
  the liver, cannot model them: aerated lung is about -850 HU and a nodule is either
  solid (about -100..+100 HU) or ground-glass (about -750..-300 HU) whatever the lung
  around it. So each sample draws a nodule kind and a target HU in that kind's range;
  the texture varies the target by +-``target_jitter_hu``, and a voxel is raised towards
  its target by the soft mask's weight (never lowered: vessels inside a nodule stay
  bright). Sizes 6-20 mm diameter (tiny / small, 0.5 / 0.5 as FreeTumor's chest set,
  1-3 nodules), within the 3-30 mm of nodules; centres at least 10 mm inside the lung
  in their axial slice, away from the pleura, and the nodule is clipped to the lung.
  Window -1000..500 HU (FreeTumor's chest window; a lung level -600 / width 1500 window
  would be -1350..150 and clip solid nodules' upper range).
* ``multi``: FreeTumor's multi-organ label convention (0 background, 1 liver, 2 liver
  tumor, 3 pancreas, 4 pancreas tumor, 5 kidney, 6 kidney tumor): one label map, tumors
  painted into each organ present with that organ's own profile (see
  :class:`MultiOrganProfile`). Window -175..250 HU.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Mapping

from tumor_synthesis.sizes import TUMOR_TYPES
from tumor_synthesis.texture import TextureConfig

#: Synthesis presets: "original" is the published method bit for bit (every profile's own
#: values); "realistic" changes what the realism measurements point at (see :class:`Preset`).
PRESETS = ("original", "realistic")

#: Intensity models: "difference" adds ``sign * texture * soft_mask * difference`` (liver,
#: pancreas, kidney); "target" raises voxels towards a target HU (lung nodules).
INTENSITY_MODELS = ("difference", "target")


@dataclass(frozen=True)
class LesionKind:
    """One kind of lesion of the "target" intensity model.

    Attributes:
        name: e.g. "solid", "ground_glass".
        hu_range: uniform range (HU) of the lesion's target intensity.
        probability: probability that a sample draws this kind.
    """

    name: str
    hu_range: tuple[float, float]
    probability: float


def _frozen(mapping: Mapping[str, object] | None = None) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Preset:
    """What a named preset changes in the synthesis of one organ: data, read by the models.

    Attributes:
        profile: :class:`OrganProfile` fields to replace (ellipsoid model, and the engine
            under the learned model), e.g. ``{"edge_blur_mm": (0.5, 1.0)}``.
        growth: ``tumor_synthesis.growth.GrowthRules`` fields to replace (growth model).
        learned: painting options of the learned generator
            (``tumor_synthesis.learned.TumorGenerator.paint_options``).
    """

    profile: Mapping[str, object] = field(default_factory=_frozen)
    growth: Mapping[str, object] = field(default_factory=_frozen)
    learned: Mapping[str, object] = field(default_factory=_frozen)

    def __post_init__(self):
        for name in ("profile", "growth", "learned"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if "presets" in self.profile or "name" in self.profile:
            raise ValueError("a preset cannot replace a profile's name or its presets")


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
        erosion_border_is_organ: the crop's faces count as organ in the centre erosion
            (the original's border; it does not erode where the organ's edge lies on its
            bounding box). False for the lung, to keep nodules off the pleura everywhere.
        intensity_model: "difference" or "target" (see :data:`INTENSITY_MODELS`).
        lesion_kinds: kinds of the "target" model (target HU ranges and probabilities).
        target_jitter_hu: half-range (HU) by which the texture moves the target ("target"
            model): ``target + jitter * (2 * texture - 1)``.
        centered_sizes: size classes whose tumors are centred on the organ voxel nearest
            the organ's centre of mass instead of a random centre (pancreas: "large").
        exophytic_sizes: size classes that may grow out of the organ.
        exophytic_probability: probability that a tumor of ``exophytic_sizes`` is left
            unclipped; outside the organ it may only take voxels that are background in
            the label and at least ``exophytic_min_hu`` (soft tissue, not air or gas),
            and its baseline there is drawn from a normal law with the organ's median HU
            and voxel noise, so that the outside part looks like the inside part.
        exophytic_min_hu: lowest HU an exophytic tumor may grow into.
        surface_rim_mm: thickness (mm) of organ tissue kept between a clipped tumor and the
            organ's surface: the tumor is clipped to the organ eroded by this much (0: the
            original, a tumor is clipped at the surface itself).
        label_visible_edge: None (the original): the label is the unblurred tumor mask. A
            fraction in (0, 1): the label also takes the organ voxels where the blurred mask
            reaches that fraction (``engine.synthesize_tumors``); a transform's own
            ``label_visible_edge`` wins.
        presets: named presets other than "original" (:data:`PRESETS`): what each changes
            (:class:`Preset`); applied by :func:`with_preset`.
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
    erosion_border_is_organ: bool = True
    intensity_model: str = "difference"
    lesion_kinds: tuple[LesionKind, ...] = ()
    target_jitter_hu: float = 0.0
    centered_sizes: tuple[str, ...] = ()
    exophytic_sizes: tuple[str, ...] = ()
    exophytic_probability: float = 0.0
    exophytic_min_hu: float = -300.0
    surface_rim_mm: float = 0.0
    label_visible_edge: float | None = None
    presets: Mapping[str, Preset] = field(default_factory=_frozen, compare=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "presets", _frozen(self.presets))
        unknown_presets = [p for p in self.presets if p not in PRESETS or p == "original"]
        if unknown_presets:
            raise ValueError(f"organ profile {self.name!r}: unknown presets {unknown_presets}; the presets are "
                             f"{list(PRESETS)} (original: the profile itself)")
        edge = self.label_visible_edge
        if edge is not None and not 0.0 < float(edge) < 1.0:
            raise ValueError(f"organ profile {self.name!r}: label_visible_edge must be a fraction in (0, 1) or None")
        unknown = [t for t in self.tumor_types if t not in TUMOR_TYPES]
        if unknown:
            raise ValueError(f"organ profile {self.name!r}: unknown tumor types {unknown}")
        if len(self.type_probabilities) != len(self.tumor_types):
            raise ValueError(f"organ profile {self.name!r}: one probability per tumor type is needed")
        if self.intensity_sign not in (-1, 1):
            raise ValueError(f"organ profile {self.name!r}: intensity_sign must be -1 or +1")
        if self.intensity_model not in INTENSITY_MODELS:
            raise ValueError(f"organ profile {self.name!r}: intensity_model must be one of {INTENSITY_MODELS}")
        if self.intensity_model == "target":
            total = sum(k.probability for k in self.lesion_kinds)
            if not self.lesion_kinds or abs(total - 1.0) > 1e-6:
                raise ValueError(f"organ profile {self.name!r}: the target model needs lesion kinds summing to 1")
        if not self.surface_rim_mm >= 0:  # also refuses NaN
            raise ValueError(f"organ profile {self.name!r}: the surface rim (surface_rim_mm) must be a thickness "
                             f">= 0 mm, got {self.surface_rim_mm}")
        if not 0.0 <= self.exophytic_probability <= 1.0:
            raise ValueError(f"organ profile {self.name!r}: exophytic_probability must be in [0, 1]")
        if len(self.class_names) <= max(self.organ_label, self.tumor_label):
            raise ValueError(f"organ profile {self.name!r}: class_names must name the organ and tumor labels")

    @property
    def num_classes(self) -> int:
        """Classes of the label convention, background included (network output channels)."""
        return len(self.class_names)

    @property
    def members(self) -> tuple["OrganProfile", ...]:
        """The organs painted into one label map: this one."""
        return (self,)

    @property
    def label_pairs(self) -> tuple[tuple[str, int, str, int], ...]:
        """``(organ name, organ label, tumor name, tumor label)`` of each organ."""
        return tuple(
            (self.class_names[m.organ_label], m.organ_label, self.class_names[m.tumor_label], m.tumor_label)
            for m in self.members
        )


@dataclass(frozen=True)
class MultiOrganProfile:
    """Several organs sharing one label map, each painted with its own profile.

    Attributes:
        name: profile name.
        window: (a_min, a_max) HU window of the whole label set.
        class_names: names of the label values 0, 1, 2, ...
        members: the organ profiles, relabelled to this convention's organ and tumor
            values.
    """

    name: str
    window: tuple[float, float]
    class_names: tuple[str, ...]
    members: tuple[OrganProfile, ...]

    num_classes = OrganProfile.num_classes
    label_pairs = OrganProfile.label_pairs

    @property
    def organ_label(self) -> int:
        """Label of the first organ (what single-organ code paths read)."""
        return self.members[0].organ_label

    @property
    def tumor_label(self) -> int:
        """Tumor label of the first organ."""
        return self.members[0].tumor_label


#: DiffTumor's tumor mix for pancreas and kidney: early 0.8 (tiny / small), medium 0.1, large 0.1.
_DIFFTUMOR_TYPES = ("few_tiny", "few_small", "one_medium", "one_large")
_DIFFTUMOR_PROBABILITIES = (0.4, 0.4, 0.1, 0.1)
#: Abdomen window of DiffTumor and FreeTumor (HU).
ABDOMEN_WINDOW = (-175.0, 250.0)

#: The liver's "realistic" preset. Each value answers one measurement of ``python -m
#: tumor_synthesis.realism`` (docs/reference/organ-profiles.md: the measurement, the published
#: fact, the figures before and after): edges as sharp as real lesions' at 1 mm (the published
#: sigma U(1, 2) mm spreads them over 4-8 mm), a label that ends where the visible lesion ends
#: (half the blurred step), the contrast of real hypodense lesions, and the learned generator's
#: offset kept inside the label.
LIVER_REALISTIC = Preset(
    profile={"edge_blur_mm": (0.5, 1.0), "difference_hu": (80.0, 160.0), "label_visible_edge": 0.5},
    growth={"blur_mm": (0.3, 0.6), "difference_hu": (85.0, 165.0), "grid_not_coarser_than_image": True},
    learned={"inside_label": True},
)

#: Known organs. Liver: the values of Hu et al. (CVPR 2023).
PROFILES: dict[str, OrganProfile | MultiOrganProfile] = {
    "liver": OrganProfile(
        name="liver",
        window=(-21.0, 189.0),
        class_names=("background", "liver", "tumor"),
        presets={"realistic": LIVER_REALISTIC},
    ),
    "lung": OrganProfile(
        name="lung",
        window=(-1000.0, 500.0),
        class_names=("background", "lung", "nodule"),
        tumor_types=("few_tiny", "few_small"),
        type_probabilities=(0.5, 0.5),
        intensity_sign=1,
        intensity_model="target",
        lesion_kinds=(
            LesionKind("solid", (-100.0, 100.0), 0.6),
            LesionKind("ground_glass", (-750.0, -300.0), 0.4),
        ),
        target_jitter_hu=40.0,
        edge_blur_mm=(0.5, 1.0),
        placement_band=(0.1, 0.9),
        erosion_radius_mm=10.0,
        erosion_border_is_organ=False,
    ),
    "pancreas": OrganProfile(
        name="pancreas",
        window=ABDOMEN_WINDOW,
        class_names=("background", "pancreas", "tumor"),
        tumor_types=_DIFFTUMOR_TYPES,
        type_probabilities=_DIFFTUMOR_PROBABILITIES,
        centered_sizes=("large",),
    ),
    "kidney": OrganProfile(
        name="kidney",
        window=ABDOMEN_WINDOW,
        class_names=("background", "kidney", "tumor"),
        tumor_types=_DIFFTUMOR_TYPES,
        type_probabilities=_DIFFTUMOR_PROBABILITIES,
        exophytic_sizes=("medium", "large"),
        exophytic_probability=0.5,
    ),
}

#: FreeTumor's multi-organ convention: organ label -> its tumor label 1->2, 3->4, 5->6. The one
#: table of it: class names, the phantom's multi-organ labels and evaluation derive from it.
FREETUMOR_LABELS = (("liver", 1, 2), ("pancreas", 3, 4), ("kidney", 5, 6))
#: Name of each label value 0..6 of the FreeTumor convention.
FREETUMOR_CLASS_NAMES = ("background",) + tuple(
    name for organ, _, _ in FREETUMOR_LABELS for name in (organ, f"{organ}_tumor")
)

PROFILES["multi"] = MultiOrganProfile(
    name="multi",
    window=ABDOMEN_WINDOW,
    class_names=FREETUMOR_CLASS_NAMES,
    members=tuple(
        replace(
            PROFILES[organ],
            organ_label=organ_label,
            tumor_label=tumor_label,
            class_names=FREETUMOR_CLASS_NAMES,
        )
        for organ, organ_label, tumor_label in FREETUMOR_LABELS
    ),
)


def available_organs() -> tuple[str, ...]:
    """Names accepted by :func:`get_organ_profile`."""
    return tuple(PROFILES)


def get_organ_profile(name: str) -> OrganProfile | MultiOrganProfile:
    """The profile of organ ``name`` (case-insensitive).

    Raises:
        ValueError: for an unknown organ, listing the known ones.
    """
    key = str(name).strip().lower()
    if key not in PROFILES:
        raise ValueError(f"no tumor synthesis profile for organ {name!r}; available: {list(PROFILES)}")
    return PROFILES[key]


def with_surface_rim(profile: OrganProfile | MultiOrganProfile, rim_mm: float) -> OrganProfile | MultiOrganProfile:
    """``profile`` whose clipped tumors keep ``rim_mm`` of organ tissue under the surface (every member organ).

    Raises:
        ValueError: ``rim_mm`` is negative or NaN (checked by ``OrganProfile``).
    """
    rim_mm = float(rim_mm)
    if isinstance(profile, MultiOrganProfile):
        return replace(profile, members=tuple(replace(m, surface_rim_mm=rim_mm) for m in profile.members))
    return replace(profile, surface_rim_mm=rim_mm)


def preset_of(organ: OrganProfile, preset: str) -> Preset:
    """What ``preset`` changes for ``organ`` (nothing for "original").

    Raises:
        ValueError: an unknown preset, or one this organ has no values for (one line).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown synthesis preset {preset!r}; choose one of {list(PRESETS)}")
    if preset == "original":
        return Preset()
    if preset not in organ.presets:
        measured = [name for name, p in PROFILES.items() if isinstance(p, OrganProfile) and preset in p.presets]
        raise ValueError(f"organ {organ.name!r} has no {preset!r} synthesis preset (organs with one: {measured}); "
                         "use preset 'original'")
    return organ.presets[preset]


def with_preset(profile: OrganProfile | MultiOrganProfile, preset: str) -> OrganProfile | MultiOrganProfile:
    """``profile`` (every member organ) with the profile fields of ``preset`` applied; "original": ``profile`` itself.

    Raises:
        ValueError: see :func:`preset_of`.
    """
    if preset == "original":
        return profile
    if isinstance(profile, MultiOrganProfile):
        return replace(profile, members=tuple(with_preset(m, preset) for m in profile.members))
    changes = preset_of(profile, preset).profile
    return replace(profile, **changes) if changes else profile
