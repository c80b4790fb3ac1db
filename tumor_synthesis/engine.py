"""The ellipsoid model's engine: paints the tumors of one sample into one organ of a healthy (H, W, D) volume.

Order of work in :func:`synthesize_tumors`, all driven by one ``numpy.random.Generator``, one
function per step:

1. the organ's crop (:func:`placement.scan_label`), or nothing when the label already holds
   a tumor: from the case's :class:`case_data.OrganCase` when one is passed (computed once
   per case), else computed here the same way;
2. the sample-wide draws (:func:`_draw_sample`): the tumors of the drawn type
   (:func:`sizes.sample_tumor_specs`), one texture and one set of intensity parameters;
3. the working box (:func:`_working_box`), then for each tumor a deformed shape
   (:func:`shape.tumor_shape`) and a centre (:func:`_center_sampler`,
   :class:`placement.CenterSampler`): :func:`_place_tumors`;
4. tumors whose blurred footprints touch are grouped into clusters; per cluster the union
   of the masks is clipped to the organ (:func:`_cluster_mask`), blurred, textured and
   subtracted from the image, and its voxels become tumor in the label
   (:func:`_paint_cluster`, :func:`_intensity_change`; :mod:`intensity`, :mod:`texture`).

Nothing outside the clusters is touched, so the cost follows the tumors, not the organ.

Organ profiles add three options (:mod:`organs`): the "target" intensity model (lung
nodules, brighter than the organ), centred size classes (large pancreas tumors sit on
the organ voxel nearest the organ's centre of mass) and exophytic tumors (kidney): a
tumor left unclipped grows out of the organ into label-background voxels of at least
``exophytic_min_hu`` (soft tissue, never air); the working box then grows by the tumor's
reach, components of the tumor that do not touch the organ are dropped, and outside the
organ the tumor's baseline is drawn from a normal law with the organ's median HU and its
voxel noise (so it is as grainy as the organ, not smooth and not fat). The order of random draws for a
profile without these options is unchanged, so the liver's samples are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tumor_synthesis.intensity import (
    IntensityParams,
    apply_change,
    blur_radius_vox,
    blur_sigma_vox,
    changed_values,
    merge_boxes,
    sample_intensity,
    sample_target_intensity,
    soft_mask,
    target_change,
)
from tumor_synthesis.case_data import OrganCase, erosion_radius_vox, organ_case
from tumor_synthesis.organs import OrganProfile
from tumor_synthesis.placement import CenterSampler
from tumor_synthesis.shape import tumor_shape
from tumor_synthesis.sizes import TumorSpec, sample_tumor_specs
from tumor_synthesis.texture import TextureParams, sample_texture_params, texture_field, texture_values


@dataclass(frozen=True)
class PlacedTumor:
    """One tumor as drawn.

    Attributes:
        spec: size class, semi-axes (mm) and deformation strength (mm).
        center: voxel (x, y, z) of the volume on which the tumor is centred.
        voxels: tumor voxels inside the working box before clipping to the organ
            (0 when the deformation emptied the shape).
        exophytic: the tumor was left unclipped (may grow out of the organ).
    """

    spec: TumorSpec
    center: tuple[int, int, int]
    voxels: int
    exophytic: bool = False


@dataclass(frozen=True)
class SynthesisPlan:
    """Everything drawn for one sample (for tests, previews and logs)."""

    tumor_type: str
    tumors: tuple[PlacedTumor, ...]
    texture: TextureParams
    intensity: IntensityParams
    spacing: tuple[float, float, float]


@dataclass(frozen=True)
class SynthesisResult:
    """Output of :func:`synthesize_tumors`.

    Attributes:
        image: (H, W, D) image with the tumors, same dtype as the input.
        label: (H, W, D) label, tumor voxels set to the profile's tumor label.
        plan: what was drawn.
    """

    image: np.ndarray
    label: np.ndarray
    plan: SynthesisPlan


def synthesize_tumors(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    tumor_type: str,
    profile: OrganProfile,
    spacing=(1.0, 1.0, 1.0),
    inplace: bool = False,
    shared_label: bool = False,
    label_visible_edge: float | None = None,
    case: OrganCase | None = None,
) -> SynthesisResult | None:
    """Paint synthetic tumors of ``tumor_type`` into the organ of a healthy volume.

    Args:
        image: (H, W, D) CT in HU (any numeric dtype; integer images are rounded).
        label: (H, W, D) label with the organ as ``profile.organ_label``.
        rng: the only source of randomness.
        tumor_type: one of ``profile.tumor_types``.
        profile: organ profile.
        spacing: voxel size (sx, sy, sz) in mm; sizes, blur and texture are physical.
        inplace: modify ``image`` and ``label`` instead of copies.
        shared_label: the label holds other organs too (multi-organ convention): the
            sample is skipped only when this organ's tumor label is present, instead of
            whenever a value exceeds the organ label.
        label_visible_edge: None (the original) labels the unblurred, clipped mask, and the
            blurred change spreads beyond it (a darkened halo of organ outside the label). A
            fraction in (0, 1) also labels the organ voxels whose blurred mask reaches that
            fraction of its full value: the label ends where the visible lesion fades to that
            fraction of its difference (``labelfree.apps.realism.cli`` measures the halo).
        case: this organ's per-case facts (:mod:`case_data`) for this label at this
            spacing, e.g. computed once per case in a pipeline's cached prefix; None computes
            them here. The sample is the same either way.

    Returns:
        The result, or None (inputs untouched) when the label already holds a tumor (a
        value above ``profile.organ_label``, as the original checks; with
        ``shared_label`` the organ's own tumor label) or when the organ is absent or too
        thin.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(
            f"image and label must be (H, W, D) arrays of one shape, got {image.shape} and {label.shape}"
        )
    spacing = tuple(float(s) for s in spacing)
    if case is None:
        case = organ_case(label, profile, shared_label)
    crop = case.crop
    if crop is None:
        return None
    if not inplace:
        image, label = image.copy(), label.copy()

    draw = _draw_sample(rng, tumor_type, profile)
    sigma_vox = blur_sigma_vox(draw.intensity.blur_sigma_mm, spacing)
    blur_radius = np.array(blur_radius_vox(sigma_vox))
    work = _working_box(crop, label, image, profile, draw.specs, draw.unclipped, spacing, blur_radius)
    sampler = case.sampler(profile.placement_band, erosion_radius_vox(profile, spacing),
                           profile.erosion_border_is_organ)
    pieces, placed = _place_tumors(draw.specs, draw.unclipped, case, work, sampler, spacing, rng,
                                   profile.centered_sizes)
    image_work = image[work.slices]
    brush = _Brush(
        profile=profile,
        spacing=spacing,
        sigma_vox=sigma_vox,
        texture=draw.texture,
        intensity=draw.intensity,
        organ_hu=case.organ_statistics(image, label, profile.organ_label) if any(p.unclipped for p in pieces)
        else None,
        label_visible_edge=label_visible_edge,
    )
    rim = _ball(profile.surface_rim_mm, spacing) if profile.surface_rim_mm > 0 else None
    # Tumors whose blurred footprints overlap are painted together: the blur acts on the
    # union of their masks, and nothing outside these boxes changes.
    for lo, hi, members in merge_boxes(_blur_boxes(pieces, blur_radius, work.organ.shape)):
        cluster = [pieces[k] for k in members]
        union, exophytic = _cluster_mask(cluster, lo, hi, work, label, profile, rim)
        if union.any():
            box = tuple(slice(a, b) for a, b in zip(lo, hi))
            _paint_cluster(image_work[box], label[work.slices][box], union, work.organ[box], exophytic, brush, rng)

    plan = SynthesisPlan(tumor_type, tuple(placed), draw.texture, draw.intensity, spacing)
    return SynthesisResult(image, label, plan)


@dataclass(frozen=True)
class _SampleDraw:
    """The sample-wide draws: the tumors' sizes, one texture and one intensity for all of them."""

    specs: list[TumorSpec]
    texture: TextureParams
    intensity: IntensityParams
    unclipped: list[bool]


def _draw_sample(rng: np.random.Generator, tumor_type: str, profile: OrganProfile) -> _SampleDraw:
    """Draw, in this order (the order of the random stream): sizes, texture, intensity, exophytic tumors."""
    specs = sample_tumor_specs(rng, tumor_type)
    texture = sample_texture_params(rng, profile.texture)
    if profile.intensity_model == "target":
        intensity = sample_target_intensity(rng, profile.lesion_kinds, profile.edge_blur_mm)
    else:
        intensity = sample_intensity(rng, profile.difference_hu, profile.edge_blur_mm, profile.intensity_sign)
    unclipped = [
        spec.size in profile.exophytic_sizes and bool(rng.random() < profile.exophytic_probability) for spec in specs
    ]
    return _SampleDraw(specs, texture, intensity, unclipped)


@dataclass(frozen=True)
class _Brush:
    """What every tumor cluster of one sample is painted with.

    Attributes:
        profile: the organ profile.
        spacing: voxel size (mm).
        sigma_vox: edge blur sigma per axis (voxels).
        texture: the sample's texture parameters.
        intensity: the sample's intensity parameters.
        organ_hu: the organ's median HU and voxel noise (HU), for exophytic tumors (else None).
        label_visible_edge: see :func:`synthesize_tumors`.
    """

    profile: OrganProfile
    spacing: tuple[float, float, float]
    sigma_vox: tuple[float, float, float]
    texture: TextureParams
    intensity: IntensityParams
    organ_hu: tuple[float, float] | None
    label_visible_edge: float | None


def _cluster_mask(cluster, lo, hi, work, label, profile: OrganProfile, rim) -> tuple[np.ndarray, bool]:
    """The union of a cluster's tumor masks over the box [lo, hi) of the working box, clipped, and whether exophytic.

    Clipped tumors are clipped to the organ (eroded by ``rim`` when set); exophytic ones may
    also take the allowed voxels outside it, and keep only their components touching it.
    """
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    organ = work.organ[box]
    union = np.zeros(tuple(hi - lo), dtype=bool)
    exophytic = False
    for piece in cluster:
        at = tuple(slice(a, a + n) for a, n in zip(piece.start - lo, piece.mask.shape))
        if piece.unclipped:
            exophytic = True
            union[at] |= piece.mask & (organ[at] | work.outside[box][at])
        elif rim is None:
            union[at] |= piece.mask & organ[at]
        else:
            start = work.start + piece.start
            inner = _eroded_organ(label, profile, start, start + piece.mask.shape, rim)
            union[at] |= piece.mask & organ[at] & inner
    if exophytic:
        union = _touching_organ(union, organ)
    return union, exophytic


def _paint_cluster(image_box, label_box, union, organ, exophytic: bool, brush: _Brush, rng) -> None:
    """Paint one cluster in place: the blurred, textured HU change into the image, its voxels into the label."""
    change = soft_mask(union, brush.sigma_vox)
    if brush.label_visible_edge is not None:
        # Taken before the texture scales the change in place: the edge is the mask's own.
        union = union | (organ & (change >= np.float32(brush.label_visible_edge)))
    if exophytic or brush.profile.intensity_model == "target":
        tex = texture_field(change.shape, brush.spacing, brush.texture, rng)
        change, paint = _intensity_change(change, tex, image_box, union, organ, exophytic, brush, rng)
        apply_change(image_box, paint, change)
    else:
        # Only organ voxels that the blurred mask reaches can change: the texture and the
        # arithmetic run on those alone (the same values as over the whole box).
        reached = change != 0
        reached &= organ
        where = np.flatnonzero(reached)
        values = change.reshape(-1)[where]
        values *= texture_values(change.shape, brush.spacing, brush.texture, rng, where)
        values *= np.float32(brush.intensity.sign * brush.intensity.difference_hu)
        moved = values != 0
        if not moved.all():
            reached.reshape(-1)[where[~moved]] = False
            values = values[moved]
        image_box[reached] = changed_values(image_box[reached], values)
    label_box[union] = brush.profile.tumor_label


def _intensity_change(change, tex, image_box, union, organ, exophytic: bool, brush: _Brush, rng):
    """The HU change (from the soft mask ``change`` and texture ``tex``) and the voxels it may touch.

    "target" model: towards the lesion's target HU, organ only. Exophytic tumors: outside
    the organ the change starts from an organ-like baseline (the organ's median and voxel
    noise), not from the fat the tumor replaces. Otherwise: ``sign * difference * texture``
    times the soft mask, organ only.
    """
    intensity = brush.intensity
    if brush.profile.intensity_model == "target":
        return target_change(change, tex, image_box, intensity.target_hu, brush.profile.target_jitter_hu), organ
    if exophytic:
        outside = union & ~organ
        baseline = np.zeros(union.shape, dtype=np.float32)
        n_outside = int(np.count_nonzero(outside))
        organ_like = rng.normal(brush.organ_hu[0], brush.organ_hu[1], n_outside).astype(np.float32)
        baseline[outside] = organ_like - image_box[outside].astype(np.float32)
        change = change * (tex * np.float32(intensity.sign * intensity.difference_hu) + baseline)
        return change, organ | outside
    change *= tex
    change *= np.float32(intensity.sign * intensity.difference_hu)
    return change, organ


@dataclass(frozen=True)
class _WorkBox:
    """Where a sample is painted: the organ crop, grown for exophytic tumors.

    Attributes:
        start: index of the box's first voxel in the volume (x, y, z).
        organ: (h, w, d) bool, organ voxels.
        outside: (h, w, d) bool, voxels outside the organ an exophytic tumor may take
            (None when no tumor is exophytic: then the box is the organ crop).
    """

    start: np.ndarray
    organ: np.ndarray
    outside: np.ndarray | None

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return tuple(slice(int(s), int(s) + n) for s, n in zip(self.start, self.organ.shape))


def _working_box(crop, label, image, profile, specs, unclipped, spacing, blur_radius) -> _WorkBox:
    """The organ crop, or, with exophytic tumors, the crop grown by their reach (2 semi-axes + blur)."""
    if not any(unclipped):
        return _WorkBox(np.array(crop.start), crop.mask, None)
    reach_mm = max(2 * max(spec.radii_mm) for spec, free in zip(specs, unclipped) if free)
    margin = np.array([int(np.ceil(reach_mm / s)) for s in spacing]) + blur_radius
    lo = np.maximum(np.array(crop.start) - margin, 0)
    hi = np.minimum(np.array(crop.start) + np.array(crop.mask.shape) + margin, np.array(label.shape))
    slices = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    label_box = label[slices]
    organ = label_box == profile.organ_label
    outside = (label_box == 0) & (image[slices] >= profile.exophytic_min_hu)
    return _WorkBox(lo, organ, outside)


def _touching_organ(union: np.ndarray, organ: np.ndarray) -> np.ndarray:
    """The 26-connected components of ``union`` that hold organ voxels."""
    components, _ = ndimage.label(union, structure=np.ones((3, 3, 3), dtype=bool))
    keep = np.unique(components[union & organ])
    return np.isin(components, keep[keep > 0])


def _ball(radius_mm: float, spacing) -> np.ndarray:
    """Ellipsoidal structuring element of ``radius_mm`` in every direction (at least the centre voxel)."""
    half = [int(radius_mm // s) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * s / radius_mm) ** 2 for g, s in zip(grids, spacing)) <= 1.0


def _eroded_organ(label: np.ndarray, profile, lo: np.ndarray, hi: np.ndarray, ball: np.ndarray) -> np.ndarray:
    """The organ (tumor voxels painted so far included) eroded by ``ball``, over the volume box [lo, hi).

    The erosion reads the label up to the ball's half-width around the box, so the organ's
    surface just outside the box (the organ crop is its bounding box shrunk by one voxel)
    still erodes it; the scan's own faces are not organ surface: an organ cut by the field
    of view continues beyond it.
    """
    half = np.array(ball.shape) // 2
    outer_lo = np.maximum(lo - half, 0)
    outer_hi = np.minimum(hi + half, np.array(label.shape))
    outer = label[tuple(slice(int(a), int(b)) for a, b in zip(outer_lo, outer_hi))]
    organ = (outer == profile.organ_label) | (outer == profile.tumor_label)
    inner = tuple(slice(int(a), int(b)) for a, b in zip(lo - outer_lo, hi - outer_lo))
    if organ.all():  # deep inside the organ: nothing to erode (most small tumors)
        return organ[inner]
    return ndimage.binary_erosion(organ, structure=ball, border_value=1)[inner]


def _organ_center(crop, spacing) -> np.ndarray:
    """The organ voxel (crop coordinates) nearest, in mm, to the organ's centre of mass."""
    voxels = np.argwhere(crop.mask)
    offsets = (voxels - voxels.mean(axis=0)) * np.asarray(spacing)
    return voxels[int(np.argmin(np.einsum("ij,ij->i", offsets, offsets)))]


@dataclass(frozen=True)
class _Piece:
    """The part of one tumor's mask inside the working box, at ``start`` (box voxels)."""

    start: np.ndarray
    mask: np.ndarray
    unclipped: bool = False


def _place_tumors(specs, unclipped, case: OrganCase, work, sampler: CenterSampler, spacing, rng, centered_sizes):
    """Draw each tumor's shape and centre; keep the part of its mask inside the working box."""
    crop = case.crop
    box_shape = np.array(work.organ.shape)
    to_box = np.array(crop.start) - work.start
    pieces, placed = [], []
    center_of_mass = None
    for spec, free in zip(specs, unclipped):
        shape = tumor_shape(spec, spacing, rng)
        if spec.size in centered_sizes:
            if center_of_mass is None:
                center_of_mass = case.memo(("centre", spacing), lambda: _organ_center(crop, spacing))
            center = center_of_mass
        else:
            center = np.array(sampler.sample(rng))
        lo = center + to_box - np.array(shape.anchor)
        clo, chi = np.maximum(lo, 0), np.minimum(lo + np.array(shape.mask.shape), box_shape)
        voxels = 0
        if shape.mask.size and np.all(clo < chi):
            piece = shape.mask[tuple(slice(a - o, b - o) for a, b, o in zip(clo, chi, lo))]
            voxels = int(np.count_nonzero(piece))
            if voxels:
                pieces.append(_Piece(clo, piece, free))
        placed.append(PlacedTumor(spec, tuple(int(c) for c in center + np.array(crop.start)), voxels, free))
    return pieces, placed


def _blur_boxes(pieces: list[_Piece], margin: np.ndarray, crop_shape) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each piece's box grown by the blur radius (where its blurred mask is non-zero)."""
    limit = np.array(crop_shape)
    return [
        (np.maximum(p.start - margin, 0), np.minimum(p.start + np.array(p.mask.shape) + margin, limit)) for p in pieces
    ]
