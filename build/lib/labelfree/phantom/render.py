"""Rasterising world-space anatomy onto a voxel grid, then turning it into a CT image.

A :class:`Canvas` holds three RAS-ordered (H, W, D) arrays: the noise-free HU value, the
tissue class and the organ code of every voxel. Structures are painted in anatomical order,
each one evaluated only inside its bounding box; a structure may be restricted to voxels
that currently hold given tissues (e.g. organs only inside the abdominal cavity), which is
how organs nest without explicit boolean geometry. :func:`to_ct` then applies the scanner:
point-spread blur (partial volume), correlated noise, HU clipping and int16 rounding.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import ndimage

from .geometry import Grid

#: HU range stored by CT scanners in int16 images.
HU_MIN, HU_MAX = -1024, 3071


class Canvas:
    """Noise-free voxel model of one case (RAS voxel order).

    Attributes:
        grid: the sampling grid.
        hu: (H, W, D) float32 nominal HU value.
        tissue: (H, W, D) uint8 :class:`phantom.tissues.Tissue` code.
        organ: (H, W, D) uint8 organ code (BTCV numbering for the abdomen).
    """

    def __init__(self, grid: Grid, background_hu: float = -1000.0):
        self.grid = grid
        self.hu = np.full(grid.shape, background_hu, dtype=np.float32)
        self.tissue = np.zeros(grid.shape, dtype=np.uint8)
        self.organ = np.zeros(grid.shape, dtype=np.uint8)

    def paint(
        self,
        shape,
        tissue: int,
        hu: float | Callable,
        *,
        organ: int | None = 0,
        within=None,
        band: tuple[float | None, float] = (None, 1.0),
        clip: Callable | None = None,
    ):
        """Assign ``tissue``/``hu``/``organ`` to the voxels inside ``shape``.

        Args:
            shape: any object with ``bbox()`` and ``field(X, Y, Z)`` (see :mod:`phantom.shapes`).
            tissue: tissue code to write.
            hu: HU value, or a function of world coordinates ``(X, Y, Z)`` returning HU values
                (e.g. a base value plus a smooth texture).
            organ: organ code to write; 0 clears the organ map (bone over an organ), None
                keeps it (vessels inside an organ still belong to it).
            within: if given, only voxels whose current tissue is one of these codes change.
            band: paint where ``band[0] <= field < band[1]`` (a shell when ``band[0]`` is set).
            clip: optional function of ``(X, Y, Z)`` returning a bool mask to intersect with.

        Returns:
            ``(slices, mask)`` of the painted voxels (mask relative to the slices), or None
            when the shape misses the grid.
        """
        sl = self.grid.slices_for_box(*shape.bbox())
        if sl is None:
            return None
        X, Y, Z = self.grid.coords(sl)
        f = shape.field(X, Y, Z)
        mask = f < np.float32(band[1])
        if band[0] is not None:
            mask &= f >= np.float32(band[0])
        if clip is not None:
            mask = mask & clip(X, Y, Z)
        return self.paint_mask(sl, mask, tissue, hu, organ=organ, within=within, coords=(X, Y, Z))

    def paint_mask(self, sl, mask, tissue: int, hu, *, organ: int | None = 0, within=None, coords=None):
        """Like :meth:`paint` for a precomputed bool ``mask`` (broadcastable to the slices)."""
        region_shape = tuple(s.stop - s.start for s in sl)
        mask = np.broadcast_to(mask, region_shape)
        if within is not None:
            allowed = np.zeros(256, dtype=bool)
            allowed[list(within)] = True
            mask = mask & allowed[self.tissue[sl]]
        if not mask.any():
            return sl, mask
        self.tissue[sl][mask] = tissue
        if callable(hu):
            # Evaluate spatially varying values only at the painted voxels.
            X, Y, Z = coords if coords is not None else self.grid.coords(sl)
            pts = [np.broadcast_to(v, region_shape)[mask] for v in (X, Y, Z)]
            self.hu[sl][mask] = np.asarray(hu(*pts), dtype=np.float32)
        else:
            self.hu[sl][mask] = np.float32(hu)
        if organ is not None:
            self.organ[sl][mask] = organ
        return sl, mask

    def paint_layers(self, layers) -> None:
        """Paint z-invariant layers (e.g. skin, fat, muscle) on one axial plane, then copy it along z.

        Args:
            layers: sequence of ``(EllipticCylinder, tissue, hu)`` without ``z_range``, painted
                in order over the whole canvas (later layers inside earlier ones).
        """
        X, Y, _ = self.grid.coords(tuple(slice(0, n) for n in self.grid.shape))
        tissue = np.array(self.tissue[:, :, 0])
        hu = np.array(self.hu[:, :, 0])
        for shape, code, value in layers:
            inside = shape.field(X[:, :, 0], Y[:, :, 0], None) < 1.0
            tissue[inside] = code
            hu[inside] = value
        self.tissue[...] = tissue[:, :, None]
        self.hu[...] = hu[:, :, None]
        self.organ[...] = 0

    def volume_ml(self, organ: int) -> float:
        """Volume (mL) of the voxels holding organ code ``organ``."""
        return float(np.count_nonzero(self.organ == organ)) * float(np.prod(self.grid.spacing)) / 1000.0


class MaskLookup:
    """Point-in-mask queries on a fixed reference grid (nearest voxel).

    Vessel trees and lesion positions are drawn against a mask rendered on a fixed reference
    grid rather than on the output grid, so they do not depend on the output spacing.
    """

    def __init__(self, grid: Grid, mask: np.ndarray):
        self.grid = grid
        self.mask = np.asarray(mask, dtype=bool)

    def __call__(self, points) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(points, dtype=float))
        idx = np.rint((pts - np.asarray(self.grid.origin)) / np.asarray(self.grid.spacing)).astype(int)
        ok = np.all((idx >= 0) & (idx < np.asarray(self.grid.shape)), axis=1)
        out = np.zeros(len(pts), dtype=bool)
        i = idx[ok]
        out[ok] = self.mask[i[:, 0], i[:, 1], i[:, 2]]
        return out


def to_ct(
    clean_hu: np.ndarray,
    spacing,
    rng: np.random.Generator,
    noise_std_hu: float,
    psf_sigma_mm=(0.6, 0.6, 0.8),
) -> np.ndarray:
    """Turn a noise-free HU volume into a CT-like int16 image.

    The scanner's point-spread function (in-plane blur and slice profile) is a Gaussian of
    ``psf_sigma_mm``. Noise is white Gaussian noise passed through the same blur, so it is
    spatially correlated like reconstructed CT noise; it is pre-scaled so that its standard
    deviation after the blur is ``noise_std_hu``. Blurring ``clean + noise`` once costs one
    filter pass instead of two.

    Args:
        clean_hu: (H, W, D) float32 noise-free HU values.
        spacing: voxel size (mm).
        rng: generator of the noise.
        noise_std_hu: target noise standard deviation (HU) in homogeneous regions.
        psf_sigma_mm: Gaussian PSF sigma per axis (mm).

    Returns:
        (H, W, D) int16 HU image, clipped to [-1024, 3071].
    """
    sigma_vox = [float(s) / float(sp) for s, sp in zip(psf_sigma_mm, spacing)]
    gain = 1.0
    for s in sigma_vox:
        gain *= _gaussian_noise_gain(s)
    noisy = rng.standard_normal(size=clean_hu.shape, dtype=np.float32)
    noisy *= np.float32(noise_std_hu / gain)
    noisy += clean_hu
    ndimage.gaussian_filter(noisy, sigma=sigma_vox, output=noisy, mode="nearest", truncate=3.0)
    np.clip(noisy, HU_MIN, HU_MAX, out=noisy)
    return np.rint(noisy).astype(np.int16)


def _gaussian_noise_gain(sigma_vox: float, truncate: float = 3.0) -> float:
    """Factor by which a 1D Gaussian filter (as scipy builds it) scales white-noise std."""
    if sigma_vox <= 0:
        return 1.0
    radius = int(truncate * sigma_vox + 0.5)
    x = np.arange(-radius, radius + 1, dtype=float)
    w = np.exp(-0.5 * (x / sigma_vox) ** 2)
    w /= w.sum()
    return float(np.sqrt(np.sum(w**2)))
