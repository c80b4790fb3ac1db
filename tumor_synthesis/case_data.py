"""What tumor synthesis needs to know about a case, computed once per case instead of once per draw.

Everything here depends on the case alone (its label, image and voxel size), never on a
draw: the organ's working box and mask (:func:`placement.scan_label`, one pass over the
whole label), whether the label already holds a tumor, the eroded candidate voxels of the
placement slices (:class:`placement.CenterSampler`), and the organ's median HU and voxel
noise (exophytic tumors). Without it every draw pays these per-scan costs again, and they
grow with the field of view, not with the tumors.

:class:`CaseData` holds them for every organ of a profile. It is made either

* once per case by :class:`tumor_synthesis.case_transform.TumorCaseDatad`, a deterministic
  dictionary transform that sits in the cached prefix of a training pipeline just before
  ``TumorGenerated`` (which then reads it from the sample under :data:`CASE_DATA_KEY`), or
* on the fly by the synthesis itself when no valid case data comes with the sample
  (``TumorGenerated`` used alone): the same functions, so a seed paints the same sample
  bit for bit either way.

Validity: case data describe the (1, H, W, D) label they were computed from. They are keyed
by the label's shape, its affine (a MetaTensor's; a crop or a flip changes it) and the
voxel size, and by the organ profile; the synthesis ignores (and recomputes) case data whose
key does not match the arrays it paints. A transform that changes label values without
changing the geometry between ``TumorCaseDatad`` and the synthesis cannot be detected
this way: put nothing between them (the training pipeline of ``labelfree.data.transforms``
puts them next to each other).

Case data are immutable after they are made, apart from memos that fill lazily with values
that depend on the case alone (eroded slices not precomputed): ``copy.deepcopy`` (what a
``CacheDataset`` does to every cached sample on every draw) returns the object itself, so a
draw copies none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from tumor_synthesis.organs import MultiOrganProfile, OrganProfile
from tumor_synthesis.placement import CenterSampler, OrganCrop, scan_label

#: Key of the case data in a sample dictionary.
CASE_DATA_KEY = "tumor_case_data"


@dataclass(eq=False)
class OrganCase:
    """One organ of one case.

    Attributes:
        organ: organ profile name.
        crop: the organ's crop (:func:`placement.scan_label`), or None when the organ is
            skipped: the label already holds a tumor (a value above the organ label, or with a
            shared multi-organ label this organ's tumor label) or the organ is absent or too thin.
        candidates: memo of :class:`placement.CenterSampler`'s candidate voxels per
            (erosion radius, border rule), each a dict ``(z, eroded) -> flat indices``.
        organ_hu: the organ's median HU and voxel noise (HU), once computed (else None).
        values: memo of other values of the case alone (:meth:`memo`), e.g. the organ
            voxel nearest its centre of mass.
    """

    organ: str
    crop: OrganCrop | None
    candidates: dict = field(default_factory=dict)
    organ_hu: tuple[float, float] | None = None
    values: dict = field(default_factory=dict)

    def memo(self, key, compute):
        """``values[key]``, computed by ``compute()`` the first time (a value of the case alone)."""
        if key not in self.values:
            self.values[key] = compute()
        return self.values[key]

    def sampler(self, band, erosion_radius_vox, border_is_organ: bool) -> CenterSampler:
        """A :class:`placement.CenterSampler` of this organ whose eroded slices are memoised with the case."""
        erosion = tuple(max(0, int(r)) for r in erosion_radius_vox)
        memo = self.candidates.setdefault((erosion, bool(border_is_organ)), {})
        return CenterSampler(self.crop, band, erosion, border_is_organ, candidates=memo)

    def organ_statistics(self, image: np.ndarray, label: np.ndarray, organ_label: int) -> tuple[float, float]:
        """The organ's median HU and voxel noise (:func:`organ_statistics`), computed once."""
        if self.organ_hu is None:
            self.organ_hu = organ_statistics(image, label, organ_label, self.crop)
        return self.organ_hu


def organ_statistics(image: np.ndarray, label: np.ndarray, organ_label: int, crop: OrganCrop) -> tuple[float, float]:
    """Median HU of the organ and its voxel noise (HU), over the organ's bounding box.

    The noise is the robust spread (1.4826 MAD) of the differences between neighbouring
    organ voxels along x, divided by sqrt 2: the organ's own structure (cortex, medulla)
    barely moves it, unlike the spread of the values themselves. The box is the crop grown
    back by what :func:`placement.scan_label` shrank off (one voxel below, two above), so it
    holds every organ voxel of the volume.
    """
    box = tuple(slice(max(0, s - 1), min(size, s + n + 2))
                for s, n, size in zip(crop.start, crop.mask.shape, label.shape))
    organ = label[box] == organ_label
    values = image[box]
    median = float(np.median(values[organ]))
    pairs = organ[1:] & organ[:-1]
    if not pairs.any():
        return median, 0.0
    steps = values[1:][pairs].astype(np.float32) - values[:-1][pairs]
    return median, float(1.4826 * np.median(np.abs(steps - np.median(steps))) / np.sqrt(2.0))


def organ_case(label: np.ndarray, organ: OrganProfile, shared_label: bool) -> OrganCase:
    """The :class:`OrganCase` of ``organ`` in a (H, W, D) label (the skip rule and the crop).

    Args:
        label: (H, W, D) label.
        organ: the organ's profile.
        shared_label: the label holds other organs too (multi-organ convention): skipped
            only when this organ's tumor label is present.
    """
    if shared_label:
        if (label == organ.tumor_label).any():
            return OrganCase(organ.name, None)
        crop = scan_label((label == organ.organ_label).view(np.uint8), 1)[1]
    else:
        crop = scan_label(label, organ.organ_label)[1]
    return OrganCase(organ.name, crop)


@dataclass(frozen=True)
class CaseKey:
    """What case data must match: the label's geometry, the voxel size and the profile.

    Attributes:
        shape: (H, W, D) of the label.
        affine: the label's 4x4 affine as a tuple (None for arrays without one).
        spacing: voxel size (mm) the synthesis uses.
        profile: the organ profile.
    """

    shape: tuple[int, ...]
    affine: tuple | None
    spacing: tuple[float, float, float]
    profile: OrganProfile | MultiOrganProfile


class CaseData:
    """The per-case facts of every organ of a profile (see the module docstring).

    Attributes:
        key: what the data describe (:class:`CaseKey`).
        organs: :class:`OrganCase` per organ name.
    """

    def __init__(self, key: CaseKey, organs: dict[str, OrganCase]) -> None:
        self.key = key
        self.organs = organs

    def __deepcopy__(self, memo) -> "CaseData":
        return self  # shared: a function of the case alone (see the module docstring)

    def __copy__(self) -> "CaseData":
        return self

    def organ(self, name: str) -> OrganCase:
        return self.organs[name]


def case_key(label, spacing, profile) -> CaseKey:
    """The :class:`CaseKey` of a (1, H, W, D) or (H, W, D) label (numpy, tensor or MetaTensor)."""
    affine = getattr(label, "affine", None)
    if affine is not None:
        affine = tuple(np.asarray(affine.detach().cpu() if hasattr(affine, "detach") else affine,
                                  dtype=np.float64).ravel().tolist())
    return CaseKey(tuple(int(n) for n in label.shape[-3:]), affine, tuple(float(s) for s in spacing), profile)


def compute_case_data(label: np.ndarray, key: CaseKey, image: np.ndarray | None = None) -> CaseData:
    """The :class:`CaseData` of a (H, W, D) label (and image, for the organ statistics).

    Precomputes, for every organ that is not skipped, the eroded candidate voxels of every
    slice of its first placement band at ``key.spacing``, and, for organs with exophytic
    tumors, the organ statistics; anything else is memoised when first needed.
    """
    profile = key.profile
    shared = isinstance(profile, MultiOrganProfile)
    organs = {}
    for organ in profile.members:
        case = organ_case(label, organ, shared)
        organs[organ.name] = case
        if case.crop is None:
            continue
        sampler = case.sampler(organ.placement_band, erosion_radius_vox(organ, key.spacing),
                               organ.erosion_border_is_organ)
        sampler.precompute_band()
        if image is not None and organ.exophytic_sizes and organ.exophytic_probability > 0:
            case.organ_statistics(image, label, organ.organ_label)
    return CaseData(key, organs)


def erosion_radius_vox(organ: OrganProfile, spacing) -> tuple[int, int]:
    """In-plane half-widths (voxels) of the placement erosion: ``erosion_radius_mm`` at the voxel size."""
    return tuple(int(round(organ.erosion_radius_mm / s)) for s in spacing[:2])
