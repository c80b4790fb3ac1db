"""Tumor shapes: a solid ellipsoid, elastically deformed three times.

The original draws a solid ellipsoid in a box of four semi-axes per side, then deforms it
with ``elasticdeform.deform_random_grid(geo, sigma, points=3, order=0, axis=...)`` over the
axes (0, 1), then (1, 2), then (0, 2). This module computes exactly that deformation
(elasticdeform's control-point layout, cubic B-spline displacement, nearest-neighbour
sampling, zero outside) without the library, and only where the tumor can be: with order 0
and two deformed axes, every line along the third axis is copied whole from one source
line, so one pass is a gather of lines instead of a per-voxel interpolation of the whole
box. ``tests/test_synthesis_shape.py`` checks the result bit-for-bit against elasticdeform.

Shapes are boolean arrays in voxel order (x, y, z) of the volume; sizes are given in mm
and converted with the voxel spacing, so a tumor keeps its physical size at any spacing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from tumor_synthesis.sizes import TumorSpec

#: Control points per deformed axis (``points=3`` in the original).
CONTROL_POINTS = 3
#: Axis pairs deformed one after the other, as in the original.
DEFORMATION_AXES = ((0, 1), (1, 2), (0, 2))


@dataclass(frozen=True)
class TumorShape:
    """A deformed tumor, cropped to its extent.

    Attributes:
        mask: (h, w, d) bool, True inside the tumor; may be empty (all False) in the
            unlikely case the deformation pushed the whole ellipsoid out of its box.
        anchor: voxel index into ``mask`` that lands on the tumor's centre point when the
            tumor is placed (the centre of the original's box, which is ``box_shape // 2``).
    """

    mask: np.ndarray
    anchor: tuple[int, int, int]


def box_shape(radii_mm, spacing) -> tuple[int, int, int]:
    """Shape (voxels) of the box a tumor is drawn in: four semi-axes per side, kept even.

    At 1 mm this is ``(4 rx, 4 ry, 4 rz)`` as in the original.
    """
    return tuple(max(2, 2 * int(round(2.0 * r / s))) for r, s in zip(radii_mm, spacing))


def ellipsoid(radii_mm, spacing) -> tuple[np.ndarray, tuple[int, int, int], tuple[int, int, int]]:
    """Solid ellipsoid centred in its box (see :func:`box_shape`).

    A voxel is inside when ``sum(((i - c) * s / r) ** 2) < 1`` with the centre ``c`` at
    index ``box // 2``. The per-axis coordinates are computed as ``start + k * step`` (the
    way ``numpy.ogrid`` does with a complex step, like the original), so the voxels lying
    exactly on the surface round the same way as there.

    Returns:
        ``(mask, origin, full_shape)``: the bool mask cropped to the ellipsoid's bounding
        box, the index of ``mask[0, 0, 0]`` in the box, and the box shape.
    """
    full = box_shape(radii_mm, spacing)
    coords, origin = [], []
    for n, r, s in zip(full, radii_mm, spacing):
        c = n // 2
        r_vox = r / s
        lo = max(0, int(np.floor(c - r_vox)))
        hi = min(n, int(np.ceil(c + r_vox)) + 1)
        start, stop, num = (lo - c) / r_vox, (hi - c - 1) / r_vox, hi - lo
        step = (stop - start) / (num - 1) if num > 1 else 0.0
        coords.append(np.arange(num, dtype=np.float64) * step + start)
        origin.append(lo)
    x, y, z = coords
    # ``1 - s > 0`` is ``s < 1`` exactly in floating point; the in-plane sum is formed once.
    inside = (x[:, None] ** 2 + y[None, :] ** 2)[:, :, None] + z[None, None, :] ** 2 < 1.0
    return inside, tuple(origin), full


def _cubic_bspline_weights(t: np.ndarray) -> np.ndarray:
    """Weights (len(t), 4) of the four taps around a point ``t`` in [0, 1) after its knot."""
    u = 1.0 - t
    w0 = u**3 / 6.0
    w1 = (3.0 * t**3 - 6.0 * t**2 + 4.0) / 6.0
    w2 = (3.0 * u**3 - 6.0 * u**2 + 4.0) / 6.0
    return np.stack([w0, w1, w2, 1.0 - w0 - w1 - w2], axis=1)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into [0, n) (scipy's "mirror" boundary: ... 2 1 | 0 1 2 | 1 0 ...)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


@lru_cache(maxsize=512)
def control_matrix(n_out: int, n_ctrl: int = CONTROL_POINTS) -> np.ndarray:
    """Linear map from control-point displacements to per-voxel displacements, one axis.

    elasticdeform spreads the control points evenly from the first to the last voxel
    (voxel ``i`` sits at control coordinate ``(n_ctrl - 1) * i / (n_out - 1)``),
    prefilters the control grid for cubic B-splines (scipy, mirror boundary) and
    interpolates it with cubic B-splines. Both steps are linear, so along one axis they are
    the matrix returned here, shape (n_out, n_ctrl); the displacement over two axes is
    ``M0 @ grid @ M1.T``.
    """
    i = np.arange(n_out, dtype=np.float64)
    cp = (n_ctrl - 1) * i / (n_out - 1) if n_out > 1 else np.zeros(1)
    knot = np.floor(cp)
    weights = _cubic_bspline_weights(cp - knot)
    taps = _mirror(knot.astype(np.int64)[:, None] - 1 + np.arange(4)[None, :], n_ctrl)
    interp = np.zeros((n_out, n_ctrl))
    np.add.at(interp, (np.repeat(np.arange(n_out), 4), taps.ravel()), weights.ravel())
    prefilter = ndimage.spline_filter1d(np.eye(n_ctrl), order=3, axis=0, mode="mirror")
    matrix = interp @ prefilter
    matrix.setflags(write=False)
    return matrix


def crop_to_content(mask: np.ndarray, origin) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Crop a bool array to its True voxels; returns the crop and its new origin."""
    plane = mask.any(axis=2)  # two passes over the mask instead of three
    if not plane.any():
        return mask[:0, :0, :0], tuple(origin)
    sl, new_origin = [], []
    for axis, profile in enumerate((plane.any(axis=1), plane.any(axis=0), mask.any(axis=(0, 1)))):
        nz = np.flatnonzero(profile)
        sl.append(slice(nz[0], nz[-1] + 1))
        new_origin.append(origin[axis] + int(nz[0]))
    return mask[tuple(sl)], tuple(new_origin)


def deform_pass(mask, origin, full_shape, axes, displacement_vox):
    """One ``elasticdeform.deform_grid(..., order=0, mode="constant")`` pass over ``axes``.

    Args:
        mask: (h, w, d) bool, the non-empty part of the box, at ``origin`` in it.
        origin: index of ``mask[0, 0, 0]`` in the full box.
        full_shape: shape of the full box (the deformation grid spans all of it).
        axes: the two deformed axes in increasing order, e.g. ``(0, 1)``.
        displacement_vox: (2, 3, 3) control-point displacements in voxels, along
            ``axes[0]`` and ``axes[1]``.

    Returns:
        ``(mask, origin)`` of the deformed shape, cropped to where it can be non-zero.
    """
    a0, a1 = axes
    if not 0 <= a0 < a1 <= 2:
        raise ValueError(f"deform_pass needs two axes in increasing order, got {axes}")
    other = 3 - a0 - a1
    n0, n1 = full_shape[a0], full_shape[a1]
    m0, m1 = control_matrix(n0), control_matrix(n1)
    # Output voxel (i, j) takes the input value at (i + d0, j + d1), rounded half up, and 0
    # when that point is outside the box.
    src0 = np.arange(n0)[:, None] + m0 @ displacement_vox[0] @ m1.T
    src1 = np.arange(n1)[None, :] + m0 @ displacement_vox[1] @ m1.T
    i0 = np.floor(src0 + 0.5).astype(np.intp) - origin[a0]
    i1 = np.floor(src1 + 0.5).astype(np.intp) - origin[a1]
    h0, h1 = mask.shape[a0], mask.shape[a1]
    hit = (src0 >= 0) & (src0 <= n0 - 1) & (src1 >= 0) & (src1 <= n1 - 1)
    hit &= (i0 >= 0) & (i0 < h0) & (i1 >= 0) & (i1 < h1)
    rows = np.flatnonzero(hit.any(axis=1))
    if rows.size == 0:
        return mask[:0, :0, :0], tuple(origin)
    cols = np.flatnonzero(hit.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    hit = hit[r0:r1, c0:c1]
    # Index of the source line of each output line; misses read line 0 and are cleared after.
    index = i0[r0:r1, c0:c1] * h1 + i1[r0:r1, c0:c1]
    index[~hit] = 0
    if other == 2:  # (h0, h1, d): the lines are the rows of a (h0 h1, d) view
        out = mask.reshape(h0 * h1, -1)[index]
        out &= hit[:, :, None]
    elif other == 0:  # (n, h0, h1): the lines are the columns of a (n, h0 h1) view; out is (n, r, c)
        out = mask.reshape(mask.shape[0], h0 * h1)[:, index]
        out &= hit[None]
    else:  # (h0, n, h1): one copy puts the lines in rows
        out = np.moveaxis(mask, 1, 2).reshape(h0 * h1, -1)[index]
        out &= hit[:, :, None]
        out = np.moveaxis(out, 2, 1)
    # The output rows and columns are box indices; the undeformed axis keeps its origin.
    new_origin = list(origin)
    new_origin[a0], new_origin[a1] = int(r0), int(c0)
    return out, tuple(new_origin)


def tumor_shape(spec: TumorSpec, spacing, rng: np.random.Generator) -> TumorShape:
    """Draw the shape of one tumor: ellipsoid, then three random elastic deformations.

    Args:
        spec: semi-axes and deformation strength (mm).
        spacing: voxel size (sx, sy, sz) in mm.
        rng: source of the control-point displacements, N(0, sigma) in mm for each of the
            (2, 3, 3) grid values of each pass (``elasticdeform.deform_random_grid``).
    """
    mask, origin, full = ellipsoid(spec.radii_mm, spacing)
    for axes in DEFORMATION_AXES:
        displacement = rng.standard_normal((2, CONTROL_POINTS, CONTROL_POINTS)) * spec.sigma_mm
        displacement[0] /= spacing[axes[0]]
        displacement[1] /= spacing[axes[1]]
        mask, origin = deform_pass(mask, origin, full, axes, displacement)
        if mask.size == 0:
            break
    mask, origin = crop_to_content(mask, origin)
    anchor = tuple(int(n // 2 - o) for n, o in zip(full, origin))
    return TumorShape(np.ascontiguousarray(mask), anchor)
