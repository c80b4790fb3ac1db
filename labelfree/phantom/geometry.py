"""Voxel grids, affines and orientation of the phantom volumes.

Anatomy is defined in world coordinates in nibabel's RAS+ convention (millimetres; +x
towards the patient's right, +y anterior, +z superior), with the body axis at x = y = 0.
It is sampled on a :class:`Grid` whose arrays are stored in RAS voxel order (axis 0 grows
towards R, axis 1 towards A, axis 2 towards S). Other orientations (e.g. LPS, the DICOM
convention) are produced at the very end by flipping the arrays and adapting the affine,
which keeps every voxel centre at the same world position: the same seed therefore gives
bit-identical anatomy in every orientation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SUPPORTED_ORIENTATIONS = ("RAS", "LPS")


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid in RAS voxel order.

    Attributes:
        shape: number of voxels (H, W, D) along x (R), y (A), z (S).
        spacing: voxel size (sx, sy, sz) in mm.
        origin: world position (mm) of the centre of voxel (0, 0, 0).
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    def axis(self, a: int) -> np.ndarray:
        """World coordinates (mm, float64, ascending) of the voxel centres along axis ``a``."""
        return self.origin[a] + self.spacing[a] * np.arange(self.shape[a], dtype=np.float64)

    def ras_affine(self) -> np.ndarray:
        """4x4 voxel-to-world affine of the RAS-ordered arrays."""
        aff = np.diag([*self.spacing, 1.0]).astype(np.float64)
        aff[:3, 3] = self.origin
        return aff

    def slices_for_box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Voxel index slices covering the world box ``[lo, hi]`` (mm), or None when it misses the grid."""
        out = []
        for a in range(3):
            start = int(np.ceil((lo[a] - self.origin[a]) / self.spacing[a] - 1e-9))
            stop = int(np.floor((hi[a] - self.origin[a]) / self.spacing[a] + 1e-9)) + 1
            start, stop = max(start, 0), min(stop, self.shape[a])
            if start >= stop:
                return None
            out.append(slice(start, stop))
        return tuple(out)

    def coords(self, slices: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable world coordinates (mm, float32) of the voxel centres inside ``slices``.

        Returns:
            X with shape (h, 1, 1), Y with shape (1, w, 1) and Z with shape (1, 1, d).
        """
        xs = [self.axis(a)[slices[a]].astype(np.float32) for a in range(3)]
        return xs[0][:, None, None], xs[1][None, :, None], xs[2][None, None, :]


def make_grid(fov_mm, spacing, centre=(0.0, 0.0, 0.0)) -> Grid:
    """A grid of about ``fov_mm`` extent centred on ``centre`` (world mm).

    The number of voxels along each axis is ``round(fov / spacing)``, and voxel centres are
    placed symmetrically around ``centre`` so that grids of different spacings sample the
    same world box.
    """
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers in mm, got {spacing}")
    fov_mm = tuple(float(f) for f in fov_mm)
    if len(fov_mm) != 3 or min(fov_mm) <= 0:
        raise ValueError(f"field of view must be three positive numbers in mm, got {fov_mm}")
    shape = tuple(max(1, int(round(f / s))) for f, s in zip(fov_mm, spacing))
    origin = tuple(float(c) - (n - 1) * s / 2.0 for c, n, s in zip(centre, shape, spacing))
    return Grid(shape=shape, spacing=spacing, origin=origin)


def _orientation_transform(orientation: str):
    import nibabel.orientations as nio

    code = orientation.upper()
    if code not in SUPPORTED_ORIENTATIONS:
        raise ValueError(f"orientation must be one of {SUPPORTED_ORIENTATIONS}, got {orientation!r}")
    return nio.ornt_transform(nio.axcodes2ornt(("R", "A", "S")), nio.axcodes2ornt(tuple(code)))


def reorient(array: np.ndarray, orientation: str) -> np.ndarray:
    """Return a RAS-ordered (H, W, D) array in voxel order ``orientation`` (a copy, C-contiguous)."""
    import nibabel.orientations as nio

    return np.ascontiguousarray(nio.apply_orientation(array, _orientation_transform(orientation)))


def oriented_affine(grid: Grid, orientation: str) -> np.ndarray:
    """Voxel-to-world affine of the arrays returned by :func:`reorient` for ``grid``."""
    import nibabel.orientations as nio

    ornt = _orientation_transform(orientation)
    return grid.ras_affine() @ nio.inv_ornt_aff(ornt, grid.shape)


def world_to_voxel(affine: np.ndarray, points_mm) -> np.ndarray:
    """Continuous voxel indices (N, 3) of world points (N, 3) in mm."""
    pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
    homog = np.c_[pts, np.ones(len(pts))]
    return (np.linalg.inv(affine) @ homog.T).T[:, :3]


def rotation_matrix(angles_rad) -> np.ndarray:
    """Rotation matrix of intrinsic rotations about x, then y, then z (radians)."""
    ax, ay, az = angles_rad
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx
