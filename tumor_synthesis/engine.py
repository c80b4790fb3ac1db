"""The synthesis engine: paints the tumors of one sample into a healthy (H, W, D) volume.

Order of work, all driven by one ``numpy.random.Generator``:

1. the organ's working box (:func:`placement.scan_label`), or nothing when the label
   already holds a tumor;
2. the tumors of the drawn type (:func:`sizes.sample_tumor_specs`), one texture and one
   set of intensity parameters for the whole sample;
3. for each tumor a deformed shape (:func:`shape.tumor_shape`) and a centre
   (:class:`placement.CenterSampler`);
4. tumors whose blurred footprints touch are grouped into clusters; per cluster the union
   of the masks is clipped to the organ, blurred, textured and subtracted from the image
   (:mod:`intensity`, :mod:`texture`), and its voxels become tumor in the label.

Nothing outside the clusters is touched, so the cost follows the tumors, not the organ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tumor_synthesis.intensity import (
    IntensityParams,
    apply_change,
    blur_radius_vox,
    blur_sigma_vox,
    merge_boxes,
    sample_intensity,
    soft_mask,
)
from tumor_synthesis.organs import OrganProfile
from tumor_synthesis.placement import CenterSampler, scan_label
from tumor_synthesis.shape import tumor_shape
from tumor_synthesis.sizes import TumorSpec, sample_tumor_specs
from tumor_synthesis.texture import TextureParams, sample_texture_params, texture_field


@dataclass(frozen=True)
class PlacedTumor:
    """One tumor as drawn.

    Attributes:
        spec: size class, semi-axes (mm) and deformation strength (mm).
        center: voxel (x, y, z) of the volume on which the tumor is centred.
        voxels: tumor voxels inside the organ crop before clipping to the organ
            (0 when the deformation emptied the shape).
    """

    spec: TumorSpec
    center: tuple[int, int, int]
    voxels: int


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

    Returns:
        The result, or None (inputs untouched) when the label already holds a tumor (a
        value above ``profile.organ_label``, as the original checks) or when the organ is
        absent or too thin.
    """
    if image.shape != label.shape or image.ndim != 3:
        raise ValueError(
            f"image and label must be (H, W, D) arrays of one shape, got {image.shape} and {label.shape}"
        )
    spacing = tuple(float(s) for s in spacing)
    _, crop = scan_label(label, profile.organ_label)
    if crop is None:
        return None
    if not inplace:
        image, label = image.copy(), label.copy()

    specs = sample_tumor_specs(rng, tumor_type)
    texture = sample_texture_params(rng, profile.texture)
    intensity = sample_intensity(rng, profile.difference_hu, profile.edge_blur_mm, profile.intensity_sign)
    erosion = tuple(int(round(profile.erosion_radius_mm / s)) for s in spacing[:2])
    sampler = CenterSampler(crop, profile.placement_band, erosion)

    sigma_vox = blur_sigma_vox(intensity.blur_sigma_mm, spacing)
    pieces, placed = _place_tumors(specs, crop, sampler, spacing, rng)
    boxes = _blur_boxes(pieces, np.array(blur_radius_vox(sigma_vox)), crop.mask.shape)
    image_crop, label_crop = image[crop.slices], label[crop.slices]
    # Tumors whose blurred footprints overlap are painted together: the blur acts on the
    # union of their masks, and nothing outside these boxes changes.
    for lo, hi, members in merge_boxes(boxes):
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        union = np.zeros(tuple(hi - lo), dtype=bool)
        for piece in (pieces[k] for k in members):
            at = piece.start - lo
            union[tuple(slice(a, a + n) for a, n in zip(at, piece.mask.shape))] |= piece.mask
        organ = crop.mask[box]
        union &= organ
        if not union.any():
            continue
        change = soft_mask(union, sigma_vox)
        change *= texture_field(change.shape, spacing, texture, rng)
        change *= np.float32(intensity.sign * intensity.difference_hu)
        apply_change(image_crop[box], organ, change)
        label_crop[box][union] = profile.tumor_label

    plan = SynthesisPlan(tumor_type, tuple(placed), texture, intensity, spacing)
    return SynthesisResult(image, label, plan)


@dataclass(frozen=True)
class _Piece:
    """The part of one tumor's mask inside the crop, at ``start`` (crop voxels)."""

    start: np.ndarray
    mask: np.ndarray


def _place_tumors(specs, crop, sampler: CenterSampler, spacing, rng) -> tuple[list[_Piece], list[PlacedTumor]]:
    """Draw each tumor's shape and centre; keep the part of its mask inside the crop."""
    crop_shape = np.array(crop.mask.shape)
    pieces, placed = [], []
    for spec in specs:
        shape = tumor_shape(spec, spacing, rng)
        center = np.array(sampler.sample(rng))
        lo = center - np.array(shape.anchor)
        clo, chi = np.maximum(lo, 0), np.minimum(lo + np.array(shape.mask.shape), crop_shape)
        voxels = 0
        if shape.mask.size and np.all(clo < chi):
            piece = shape.mask[tuple(slice(a - o, b - o) for a, b, o in zip(clo, chi, lo))]
            voxels = int(np.count_nonzero(piece))
            if voxels:
                pieces.append(_Piece(clo, piece))
        placed.append(PlacedTumor(spec, tuple(int(c) for c in center + np.array(crop.start)), voxels))
    return pieces, placed


def _blur_boxes(pieces: list[_Piece], margin: np.ndarray, crop_shape) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each piece's box grown by the blur radius (where its blurred mask is non-zero)."""
    limit = np.array(crop_shape)
    return [
        (np.maximum(p.start - margin, 0), np.minimum(p.start + np.array(p.mask.shape) + margin, limit)) for p in pieces
    ]
