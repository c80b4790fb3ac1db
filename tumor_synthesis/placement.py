"""Where tumors go: the organ's working box and the draw of tumor centres.

Following the original, all work happens in the organ's bounding box shrunk by one voxel
on each side (the "crop"). A centre is drawn by picking an axial slice uniformly in the
30-70 % band of the organ's extent along z (the last array axis, superior-inferior after
``Orientationd("RAS")``), eroding the organ in that slice with a 5x5 kernel (2 mm on each
side at 1 mm) and picking one of the remaining voxels uniformly.

The original crashes when the eroded slice is empty (a small organ, or a crop with little
organ). Here a failed draw is retried; after 10 failures the band widens to 20-80 %, then
10-90 %, then 0-100 %, and after that the erosion is dropped; as a last resort the centre
is any organ voxel. When the first draw succeeds, which is the rule on a real liver, the
law is exactly the original's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Failed draws allowed in each placement stage before moving on to the next.
TRIES_PER_STAGE = 10
#: How much each side of the z band widens after a failed stage (fraction of the extent).
BAND_WIDENING = 0.1


@dataclass(frozen=True)
class OrganCrop:
    """The working box of one sample.

    Attributes:
        start: index of the crop's first voxel in the volume (x, y, z).
        mask: (h, w, d) bool, True on organ voxels inside the crop.
        z_first: first crop slice (along z) holding organ.
        z_last: last crop slice holding organ.
    """

    start: tuple[int, int, int]
    mask: np.ndarray
    z_first: int
    z_last: int

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Slices of the crop in the volume."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.mask.shape))


def scan_label(label: np.ndarray, organ_label: int) -> tuple[float, OrganCrop | None]:
    """Maximum label value and, when it does not exceed ``organ_label``, the organ crop.

    The crop is the organ's bounding box shrunk like the original's: ``start + 1`` to an
    exclusive ``end - 1`` (``end`` the last organ index), so one voxel comes off the low
    side and two off the high side, and tumors are clipped where the original clips them.
    One pass over the volume serves the maximum and the box: the maximum over axis 0 is a
    (W, D) projection, and when no value exceeds ``organ_label`` a column holds organ
    exactly when its maximum equals ``organ_label``.

    Args:
        label: (H, W, D) label volume.
        organ_label: value of organ voxels.

    Returns:
        ``(max_label, crop)``; ``crop`` is None when ``max_label > organ_label`` (the
        label already holds something else, e.g. a tumor) or when there is no usable organ.
    """
    projection = label.max(axis=0)
    max_label = float(projection.max())
    if max_label > organ_label:
        return max_label, None
    footprint = projection == organ_label
    ys = np.flatnonzero(footprint.any(axis=1))
    if ys.size == 0:
        return max_label, None
    zs = np.flatnonzero(footprint.any(axis=0))
    slab = label[:, ys[0] : ys[-1] + 1, zs[0] : zs[-1] + 1]
    # The organ's x extent, scanning slices inwards from both ends: cheaper than a full
    # comparison of the slab, since the organ usually spans most of it.
    rows = range(slab.shape[0])
    x_first = next(i for i in rows if (slab[i] == organ_label).any())
    x_last = next(i for i in reversed(rows) if (slab[i] == organ_label).any())
    start, stop = [], []
    for first, last, size in zip((x_first, ys[0], zs[0]), (x_last, ys[-1], zs[-1]), label.shape):
        lo, hi = max(0, int(first) + 1), min(size, int(last) - 1)
        if hi <= lo:
            return max_label, None
        start.append(lo)
        stop.append(hi)
    mask = label[start[0] : stop[0], start[1] : stop[1], start[2] : stop[2]] == organ_label
    z_in_crop = np.flatnonzero(mask.any(axis=(0, 1)))
    if z_in_crop.size == 0:
        return max_label, None
    return max_label, OrganCrop(tuple(start), mask, int(z_in_crop[0]), int(z_in_crop[-1]))


def erode_plane(plane: np.ndarray, radius, border_is_organ: bool = True) -> np.ndarray:
    """Binary erosion of a 2-D mask by a (2 rx + 1) x (2 ry + 1) rectangle.

    By default outside the plane counts as organ (like ``cv2.erode``'s default border,
    which the original used), so the plane's own edge does not erode; with
    ``border_is_organ=False`` it counts as background and erodes like any organ edge. A
    rectangle is separable: two running minima.
    """
    rx, ry = radius
    border = 1 if border_is_organ else 0
    out = np.ascontiguousarray(plane).view(np.uint8)
    out = ndimage.minimum_filter1d(out, 2 * rx + 1, axis=0, mode="constant", cval=border)
    out = ndimage.minimum_filter1d(out, 2 * ry + 1, axis=1, mode="constant", cval=border)
    return out.view(bool)


def widening_bands(band: tuple[float, float]) -> list[tuple[float, float]]:
    """The z bands tried in turn: ``band``, then widened by 0.1 per side up to (0, 1)."""
    lo, hi = float(band[0]), float(band[1])
    bands = [(lo, hi)]
    while lo > 0.0 or hi < 1.0:
        lo, hi = max(0.0, round(lo - BAND_WIDENING, 6)), min(1.0, round(hi + BAND_WIDENING, 6))
        bands.append((lo, hi))
    return bands


class CenterSampler:
    """Draws tumor centres in an organ crop (see the module docstring).

    Eroded slices are computed lazily and cached, so a sample with n tumors erodes at most
    n slices; with a shared ``candidates`` memo (the case's, :mod:`tumor_synthesis.case_data`)
    a case erodes each slice once over all its draws.

    Args:
        crop: the organ crop.
        band: (low, high) fraction of the organ's z extent for the centre slice.
        erosion_radius_vox: in-plane half-widths (x, y) of the erosion kernel in voxels
            (2, 2 at 1 mm: the original's 5x5 kernel).
        border_is_organ: the crop's faces count as organ in the erosion (the original's
            border); False erodes from them too, so that centres keep their distance
            from the organ's edge even where it lies on the crop's face (lung nodules).
        candidates: memo ``(z, eroded) -> flat candidate indices`` to read and fill (None: a
            private one). It must belong to this crop, erosion radius and border rule.
    """

    def __init__(self, crop: OrganCrop, band=(0.3, 0.7), erosion_radius_vox=(2, 2), border_is_organ: bool = True,
                 candidates: dict | None = None):
        self.border_is_organ = bool(border_is_organ)
        self.mask = crop.mask
        self.z_first, self.z_last = crop.z_first, crop.z_last
        self.bands = widening_bands(band)
        self.erosion_radius = tuple(max(0, int(r)) for r in erosion_radius_vox)
        self._candidates: dict[tuple[int, bool], np.ndarray] = {} if candidates is None else candidates

    def precompute_band(self) -> None:
        """Erode every slice a first draw can pick (those of the first band), e.g. once per case."""
        band = self.bands[0]
        for z in range(self._slice_at(band[0]), self._slice_at(band[1]) + 1):
            self._slice_candidates(z, True)

    def _slice_candidates(self, z: int, eroded: bool) -> np.ndarray:
        key = (z, eroded)
        if key not in self._candidates:
            plane = self.mask[:, :, z]
            if eroded:
                plane = erode_plane(plane, self.erosion_radius, self.border_is_organ)
            flat = np.flatnonzero(plane)
            # int32 where it fits: a case's memo holds the candidates of dozens of slices.
            self._candidates[key] = flat.astype(np.int32) if plane.size < 2**31 else flat
        return self._candidates[key]

    def _slice_at(self, fraction: float) -> int:
        # Round half to even, like Python's round() in the original.
        return int(np.rint(fraction * (self.z_last - self.z_first))) + self.z_first

    def _draw_z(self, rng: np.random.Generator, band) -> int:
        return self._slice_at(rng.uniform(band[0], band[1]))

    def sample(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """One centre (x, y, z) in crop voxel coordinates, on an organ voxel."""
        stages = [(band, True) for band in self.bands] + [(self.bands[-1], False)]
        for band, eroded in stages:
            for _ in range(TRIES_PER_STAGE):
                z = self._draw_z(rng, band)
                flat = self._slice_candidates(z, eroded)
                if flat.size:
                    x, y = np.unravel_index(flat[rng.integers(flat.size)], self.mask.shape[:2])
                    return int(x), int(y), z
        flat = np.flatnonzero(self.mask)
        x, y, z = np.unravel_index(flat[rng.integers(flat.size)], self.mask.shape)
        return int(x), int(y), int(z)
