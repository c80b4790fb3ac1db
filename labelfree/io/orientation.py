"""Put a label map saved in another axis order or orientation onto a reference voxel grid, exactly.

A prediction written by another tool may hold the same voxels as its label in another
order: saved LPS against a RAS label (axes flipped), or with axes swapped. Such a grid
is *the same grid up to axis order and flips*: every voxel centre of one is a voxel centre
of the other. :func:`onto_grid` re-indexes the array onto the reference grid (nibabel's
``io_orientation`` / ``ornt_transform`` / ``apply_orientation``: a transpose and flips, no
interpolation) and then checks that the re-indexed affine equals the reference's within
:data:`labelfree.io.readers.GRID_TOLERANCE_MM`. Anything else (another voxel size, an
origin shifted by a voxel or by any amount, a rotation, another shape) is refused by
:class:`GridMismatch`, whose message says what differs (:func:`describe_grid_difference`).

Affines are 4x4 voxel index -> RAS+ world mm, as :mod:`labelfree.io.readers` hands them out.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from labelfree.io.readers import GRID_TOLERANCE_MM


class GridMismatch(ValueError):
    """Two files are not on one voxel grid, even up to axis order and flips."""


def _affine(affine) -> np.ndarray:
    return np.asarray(affine, dtype=np.float64)


def reoriented_grid(shape: Sequence[int], affine, target_affine) -> tuple[np.ndarray, tuple[int, ...], np.ndarray]:
    """The axis order and flips that bring a grid closest to ``target_affine``'s orientation.

    Returns:
        ``(ornt, shape, affine)``: nibabel's orientation transform (``apply_orientation``
        takes it), and the shape and voxel -> world affine of the grid after it.
    """
    from nibabel import orientations

    affine = _affine(affine)
    ornt = orientations.ornt_transform(orientations.io_orientation(affine),
                                       orientations.io_orientation(_affine(target_affine)))
    new_affine = affine @ orientations.inv_ornt_aff(ornt, tuple(int(s) for s in shape))
    new_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(ornt[:, 0]))
    return ornt, new_shape, new_affine


def describe_grid_difference(shape, affine, target_shape, target_affine) -> str:
    """What separates a grid from a target grid, after the best axis order and flips (one phrase).

    E.g. ``"origin shifted by (2.0, 0.0, 0.0) mm (1.0 voxel(s) of the label)"``, ``"voxel size
    (1, 1, 2) mm vs (1, 1, 1) mm"``, ``"shape (20, 16, 12) vs (20, 16, 10)"``; ``""`` when the
    two grids are the same up to axis order and flips.
    """
    _, shape, affine = reoriented_grid(shape, affine, target_affine)
    target_affine = _affine(target_affine)
    target_shape = tuple(int(s) for s in target_shape)
    problems = []
    if shape != target_shape:
        problems.append(f"shape {shape} vs {target_shape}")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    target_spacing = np.linalg.norm(target_affine[:3, :3], axis=0)
    if np.max(np.abs(spacing - target_spacing)) > GRID_TOLERANCE_MM:
        problems.append(f"voxel size {_mm(spacing)} mm vs {_mm(target_spacing)} mm")
    else:
        directions = affine[:3, :3] / spacing
        target_directions = target_affine[:3, :3] / target_spacing
        if np.max(np.abs(directions - target_directions)) * float(np.max(target_spacing)) > GRID_TOLERANCE_MM:
            problems.append("axes rotated against each other")
    shift = affine[:3, 3] - target_affine[:3, 3]
    if np.max(np.abs(shift)) > GRID_TOLERANCE_MM:
        in_voxels = np.linalg.solve(target_affine[:3, :3], shift)
        problems.append(f"origin shifted by {_mm(shift)} mm ({_mm(in_voxels)} voxel(s) of the reference grid)")
    return "; ".join(problems)


def orientation_difference(shape: Sequence[int], affine, target_shape: Sequence[int], target_affine) -> str:
    """``""`` when a grid is the target grid up to axis order and flips, else what differs (one phrase).

    Args:
        shape, affine: (H, W, D) and voxel -> RAS+ world mm affine of the grid.
        target_shape, target_affine: the same of the reference grid.
    """
    shape, target_shape = tuple(int(s) for s in shape), tuple(int(s) for s in target_shape)
    if shape == target_shape and np.max(np.abs(_affine(affine) - _affine(target_affine))) <= GRID_TOLERANCE_MM:
        return ""
    _, new_shape, new_affine = reoriented_grid(shape, affine, target_affine)
    difference = float(np.max(np.abs(new_affine - _affine(target_affine))))
    if new_shape == target_shape and difference <= GRID_TOLERANCE_MM:
        return ""
    return (describe_grid_difference(shape, affine, target_shape, target_affine)
            or f"affines differ by {difference:.4g} mm after reorientation")


def onto_grid(array: np.ndarray, affine, target_shape: Sequence[int], target_affine) -> np.ndarray:
    """``array`` (on the grid of ``affine``) re-indexed onto the target grid, when that is exact.

    Args:
        array: (H, W, D) values on the voxel grid of ``affine``.
        affine: its voxel -> RAS+ world mm affine.
        target_shape: (H', W', D') of the reference grid.
        target_affine: voxel -> RAS+ world mm affine of the reference grid.

    Returns:
        The array itself when the grids already agree; else a transposed and flipped view of
        it, (H', W', D'), whose voxel ``(i, j, k)`` lies at the world point of the target's.

    Raises:
        GridMismatch: the grids differ otherwise (message: :func:`describe_grid_difference`).
    """
    from nibabel import orientations

    array = np.asarray(array)
    target_shape = tuple(int(s) for s in target_shape)
    if array.shape == target_shape and np.max(np.abs(_affine(affine) - _affine(target_affine))) <= GRID_TOLERANCE_MM:
        return array
    problem = orientation_difference(array.shape, affine, target_shape, target_affine)
    if problem:
        raise GridMismatch(problem)
    ornt, _, _ = reoriented_grid(array.shape, affine, target_affine)
    return orientations.apply_orientation(array, ornt)


def _mm(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
