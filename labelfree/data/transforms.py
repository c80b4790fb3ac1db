"""THE transform pipelines: training, in-training validation and validation.py share them.

One factory builds every pipeline from the same pieces, so the preprocessing of the
training data, of the in-training validation and of ``validation.py`` cannot drift apart.
All pipelines work on dictionaries of channel-first arrays ``(C, H, W, D)``.

Training (``mode="train"``), in order::

    LoadImaged (reader: labelfree.io.readers) -> EnsureChannelFirstd -> Orientationd("RAS")
    -> Spacingd(space; bilinear/nearest)
    -> label as uint8
    without syn: -> ScaleIntensityRanged(a_min..a_max HU -> 0..1, clip)
                 -> SpatialPadd(roi; image "minimum", label "constant")
    with syn:    -> SpatialPadd(roi; image "minimum", label "constant")
                 -> TumorCaseDatad: the organ's box, placement slices, ... once per case
    ---------------------------------- cache boundary -----------------------------------------
    without syn: RandCropByPosNegLabeld(roi, pos=1, neg=1, num_samples=1, image_threshold=0)
    with syn:    TumorGenerated (works in HU)
                 -> RandCropByPosNegLabeld(..., image_threshold=a_min: the same patch, in HU)
                 -> ScaleIntensityRanged on the patch
    -> RandFlipd (p 0.2) on each of the 3 axes -> RandRotate90d(p 0.2, max_k 3; only when roi_x == roi_y)
    -> RandScaleIntensityd(0.1, p 0.15) -> RandShiftIntensityd(0.1, p 0.15)

The cache boundary is the first random transform: :func:`split_at_cache_boundary` returns
the deterministic prefix (what a ``CacheDataset`` stores once per case) and the per-draw
suffix. With ``syn=True`` the prefix ends at ``Spacingd`` and the synthetic tumors are drawn
afresh, in HU, on every draw. What synthesis needs to know about the case alone (the
organ's box and mask, the eroded placement slices, the organ's statistics:
:mod:`tumor_synthesis.case_data`) is computed before the boundary, on exactly the arrays
``TumorGenerated`` paints (nothing between them moves a voxel), so it is cached with the case
and a draw only touches its tumors' boxes. The padding to the patch size is cached too: padding
with the image's minimum commutes with the (monotone, clipped) intensity scaling, and synthesis
never paints the padding (label 0, the scan's lowest HU), so the samples are those of the
original order, without a full copy of the volume on every draw of a scan thinner than the
patch. The crop's background voxels are those above the window's lower end (scaled value
above 0, i.e. HU above ``a_min``), so with ``syn`` the patch is cropped in HU and then
scaled: voxelwise scaling commutes with the crop, and a draw scales one patch instead of the
whole painted volume. Without ``syn`` the deterministic ``ScaleIntensityRanged`` and
``SpatialPadd`` are cached as well. MONAI's ``CacheDataset`` splits a flat ``Compose`` at
exactly this place, so the full pipeline can be handed to it as it is.

Validation (``mode="val"``): the same prefix plus ``ScaleIntensityRanged`` for image and
label; no synthesis, padding or augmentation. Inference (``mode="infer"``): the same for the
image alone. No trailing ``ToTensord``: outputs stay MetaTensors that keep their
``applied_operations``, so ``monai.transforms.Invertd`` can map a prediction back onto the
original image grid.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
from monai.transforms import (
    CastToTyped,
    Compose,
    EnsureChannelFirstd,
    Orientationd,
    RandCropByLabelClassesd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandRotate90d,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    SpatialPadd,
    Spacingd,
)
from monai.transforms.transform import RandomizableTrait, Transform

from labelfree.io.image_reader import load_transform

MODES = ("train", "val", "infer")
IMAGE_KEY = "image"
LABEL_KEY = "label"

#: Augmentation probabilities of the original recipe.
FLIP_PROB = 0.2
ROTATE90_PROB = 0.2
INTENSITY_PROB = 0.15
INTENSITY_FACTOR = 0.1
INTENSITY_OFFSET = 0.1


_RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


class TrainStages(NamedTuple):
    """The training pipeline cut at its cache boundary."""

    cached: Compose
    """Deterministic prefix: computed once per case and cached."""
    per_draw: Compose
    """Random suffix, starting with the first random transform: run on every draw."""


def get_transforms(
    mode: str,
    *,
    a_min: float,
    a_max: float,
    space: Sequence[float] = (1.0, 1.0, 1.0),
    roi_size: Sequence[int] = (96, 96, 96),
    syn: bool = False,
    organ: str = "liver",
    syn_prob: float = 0.9,
    syn_rim_mm: float | None = None,
    time_synthesis: bool = False,
    keep_healthy: bool = False,
    synthesis: str = "ellipsoid",
    syn_grid_mm: float | None = None,
    syn_device=None,
    syn_label_edge: float | None = None,
    syn_preset: str = "original",
    tumor_centred: bool = False,
) -> Compose:
    """Build the pipeline of ``mode`` (see the module docstring for the order).

    Args:
        mode: ``"train"``, ``"val"`` (image + label, no synthesis or augmentation) or
            ``"infer"`` (image only).
        a_min: HU mapped to 0 by ``ScaleIntensityRanged`` (lower end of the organ window).
        a_max: HU mapped to 1 (upper end of the window); values outside are clipped.
        space: target voxel spacing in mm (x, y, z) after orienting to RAS.
        roi_size: training patch size in voxels (H, W, D); used by ``train`` only.
        syn: paint synthetic tumors (``tumor_synthesis.TumorGenerated``) into the healthy
            organ; ``train`` only.
        organ: organ whose tumors are synthesised (an organ profile name: liver, lung,
            pancreas, kidney, or multi for FreeTumor's multi-organ labels 0..6).
        syn_prob: probability that a case gets synthetic tumors on a draw.
        syn_rim_mm: organ tissue (mm) kept between a synthetic tumor and the organ surface;
            None: the profile's (0, the original).
        time_synthesis: record each sample's synthesis seconds under
            ``labelfree.data.wrappers.SYNTHESIS_SECONDS_KEY`` (the training loop reports them).
        keep_healthy: with ``syn``, carry the sample as it was before synthesis under
            ``image_healthy`` / ``label_healthy``, cropped and augmented exactly like it (for the
            quality control of ``labelfree.training.quality_control``).
        synthesis: synthesis model of ``TumorGenerated``: ``"ellipsoid"`` (the original) or
            ``"growth"`` (the cellular automaton).
        syn_grid_mm: growth model only: simulation grid spacing (mm); None: the transform's
            default (2 mm).
        syn_device: None (synthesis where the sample is: the loader's CPU) or a device the
            sample is moved to before synthesis, e.g. ``cuda``: synthesis and augmentation then
            run on the GPU, in a loader without worker processes.
        syn_label_edge: label synthetic tumors out to where their blurred edge falls to this
            fraction (``TumorGenerated``'s ``label_visible_edge``); None: the original's label.
        syn_preset: ``TumorGenerated``'s ``preset``: "original" (the published method) or
            "realistic" (the organ profile's realistic values).
        tumor_centred: crops centred on a tumor voxel 9 times in 10 (on an organ voxel
            otherwise, and always when there is no tumor) instead of the original's one
            crop in two on the foreground; the generator training (``labelfree.cli.syn_train``)
            needs tumors in its crops.

    Returns:
        A flat ``monai.transforms.Compose``.
    """
    if mode not in MODES:
        raise ValueError(f"unknown transform mode {mode!r}; choose one of {list(MODES)}")
    if not a_max > a_min:
        raise ValueError(f"the intensity window needs a_max > a_min, got a_min={a_min}, a_max={a_max}")
    if mode == "infer":
        keys = (IMAGE_KEY,)
        return Compose(_load_and_resample(keys, space) + [_scale_intensity(a_min, a_max)])
    keys = (IMAGE_KEY, LABEL_KEY)
    if mode == "val":
        return Compose(_load_and_resample(keys, space) + [_scale_intensity(a_min, a_max)])

    roi_size = tuple(int(r) for r in roi_size)
    options = _synthesis_options(organ, syn_rim_mm, synthesis, syn_grid_mm, syn_device, syn_label_edge, syn_preset)
    synthesis = [_tumor_synthesis(syn_prob, options)] if syn else []
    case_data = [_case_data(options)] if syn else []
    if synthesis and time_synthesis:
        from labelfree.data.wrappers import TimedTransform

        synthesis = [TimedTransform(synthesis[0])]
    images, all_keys = (IMAGE_KEY,), keys
    if synthesis and keep_healthy:
        from labelfree.data.wrappers import HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY, HealthyCopy

        synthesis = [HealthyCopy(synthesis[0], keys=keys)]
        images, all_keys = (IMAGE_KEY, HEALTHY_IMAGE_KEY), keys + (HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY)
    pad = SpatialPadd(keys=keys, spatial_size=roi_size, mode=("minimum", "constant"))
    scale = [_scale_intensity(a_min, a_max, images)]
    # The crop's background is the voxels above the window's lower end: 0 once scaled, a_min
    # in HU. With synthesis the crop comes first and only the patch is scaled (voxelwise,
    # so the same patch) instead of the whole painted volume on every draw.
    threshold = a_min if syn else 0.0
    crop = _tumor_centred_crop(all_keys, roi_size, organ, threshold) if tumor_centred else RandCropByPosNegLabeld(
        keys=all_keys,
        label_key=LABEL_KEY,
        spatial_size=roi_size,
        pos=1,
        neg=1,
        num_samples=1,
        image_key=IMAGE_KEY,
        image_threshold=threshold,
    )
    return Compose(
        _load_and_resample(keys, space)
        + ([pad] + case_data + synthesis + [crop] + scale if syn else scale + [pad, crop])
        + [
            RandFlipd(keys=all_keys, prob=FLIP_PROB, spatial_axis=0),
            RandFlipd(keys=all_keys, prob=FLIP_PROB, spatial_axis=1),
            RandFlipd(keys=all_keys, prob=FLIP_PROB, spatial_axis=2),
            # A quarter turn swaps H and W: patches of a batch would differ in shape and not collate.
            *([RandRotate90d(keys=all_keys, prob=ROTATE90_PROB, max_k=3)] if roi_size[0] == roi_size[1] else []),
            RandScaleIntensityd(keys=images, factors=INTENSITY_FACTOR, prob=INTENSITY_PROB),
            RandShiftIntensityd(keys=images, offsets=INTENSITY_OFFSET, prob=INTENSITY_PROB),
        ]
    )


def get_train_stages(**kwargs) -> TrainStages:
    """The ``train`` pipeline of :func:`get_transforms` (same keyword arguments), split at its cache boundary."""
    return split_at_cache_boundary(get_transforms("train", **kwargs))


def split_at_cache_boundary(pipeline: Compose) -> TrainStages:
    """Split a flat pipeline before its first random (or non-``Transform``) step.

    This is the rule ``monai.data.CacheDataset`` applies, so ``cached`` is exactly what
    such a dataset stores.
    """
    transforms = list(pipeline.transforms)
    boundary = next(
        (i for i, t in enumerate(transforms) if isinstance(t, RandomizableTrait) or not isinstance(t, Transform)),
        len(transforms),
    )
    return TrainStages(cached=Compose(transforms[:boundary]), per_draw=Compose(transforms[boundary:]))


def _tumor_centred_crop(keys: tuple[str, ...], roi_size: tuple[int, ...], organ: str,
                        image_threshold: float) -> RandCropByLabelClassesd:
    from tumor_synthesis.organs import get_organ_profile

    profile = get_organ_profile(organ)
    ratios = [0.0] * profile.num_classes
    for _, organ_label, _, tumor_label in profile.label_pairs:
        ratios[organ_label] = 0.1 / len(profile.label_pairs)
        ratios[tumor_label] = 0.9 / len(profile.label_pairs)
    return RandCropByLabelClassesd(keys=keys, label_key=LABEL_KEY, spatial_size=roi_size, ratios=ratios,
                                   num_classes=profile.num_classes, num_samples=1, image_key=IMAGE_KEY,
                                   image_threshold=image_threshold, warn=False)


def _load_and_resample(keys: tuple[str, ...], space: Sequence[float]) -> list:
    """Deterministic prefix: read (any supported format), channel first, RAS, resample to ``space`` mm."""
    space = tuple(float(s) for s in space)
    if len(space) != 3 or min(space) <= 0:
        raise ValueError(f"space must be 3 positive spacings in mm, got {space}")
    modes = ("bilinear", "nearest")[: len(keys)]
    steps = [
        # NIfTI, NRRD, MetaImage or a DICOM folder: labelfree.io.readers picks the reader.
        load_transform(keys),
        EnsureChannelFirstd(keys=keys),
        # Explicit RAS axis labels: NIfTI affines are RAS+ whatever MONAI's default becomes.
        Orientationd(keys=keys, axcodes="RAS", labels=_RAS_LABELS),
        Spacingd(keys=keys, pixdim=space, mode=modes),
    ]
    if LABEL_KEY in keys:
        # Labels are small integers: uint8 instead of float32 cuts the cache by 3 bytes a voxel.
        steps.append(CastToTyped(keys=LABEL_KEY, dtype=np.uint8))
    return steps


def _scale_intensity(a_min: float, a_max: float, keys=IMAGE_KEY) -> ScaleIntensityRanged:
    return ScaleIntensityRanged(keys=keys, a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True)


def _synthesis_options(organ: str, rim_mm: float | None, model: str = "ellipsoid", grid_mm: float | None = None,
                       device=None, label_edge: float | None = None, preset: str = "original") -> dict:
    """``TumorGenerated``'s options, shared by the synthesis and its per-case data."""
    options = {"organ": organ, "surface_rim_mm": rim_mm, "synthesis": model, "device": device}
    if preset != "original":
        options["preset"] = preset
    if grid_mm is not None:
        options["growth_grid_mm"] = grid_mm
    if label_edge is not None:
        options["label_visible_edge"] = label_edge
    return options


def _tumor_synthesis(prob: float, options: dict):
    # Imported here: the non-synthetic pipelines (validation, inference) need nothing from the
    # synthesis package.
    from tumor_synthesis import TumorGenerated

    # In place: the sample reaching this step is already a private copy (CacheDataset with
    # copy_cache=True, or a fresh load for uncached cases), so a second copy of two full volumes
    # would only cost time (about 35 ms a sample at 1 mm, more than painting tiny tumors).
    return TumorGenerated(keys=(IMAGE_KEY, LABEL_KEY), prob=prob, inplace=True, **options)


def _case_data(options: dict):
    """The deterministic per-case step before the cache boundary (``tumor_synthesis.case_data``)."""
    from tumor_synthesis.case_transform import TumorCaseDatad

    return TumorCaseDatad(keys=(IMAGE_KEY, LABEL_KEY), **options)
