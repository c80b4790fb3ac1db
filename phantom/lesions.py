"""An independent lesion model: lobulated masses painted into an organ.

This model deliberately differs from the project's synthetic-tumour transform (deformed
ellipsoids with a Gaussian-filtered noise texture, subtracted from the image): a lesion here
is a smooth union of a few overlapping spheroids with a wobbled boundary, and it *replaces*
the tissue it occupies with its own appearance (homogeneous, rim-enhancing, necrotic core,
solid nodule or ground glass). Training on one model and testing on the other is a real
generalisation test.

Coordinates are millimetres in the frame ``origin + index * spacing`` of the arrays (the
world frame for RAS-ordered phantom arrays); everything is resolution independent, so the
same lesions can be sampled on one grid and painted on another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .geometry import Grid
from .shapes import SmoothField, Wobble, random_smooth_field, random_wobble, smooth_min


@dataclass(frozen=True)
class LesionStyle:
    """How lesions of one organ look and where they go.

    Attributes:
        kinds: appearance names to draw from with ``kind_probs``: ``"homogeneous"``,
            ``"rim"`` (enhancing rim), ``"necrotic"`` (darker core), ``"solid"`` or
            ``"ground_glass"`` (lung nodules).
        kind_probs: probabilities of ``kinds``.
        count: inclusive range of the number of lesions per case.
        diameter_mm: range of the longest diameter (mm); drawn log-uniformly.
        first_min_diameter_mm: the first lesion is at least this large, so every lesion case
            has a lesion that is visible at coarse spacings.
        contrast_hu: for relative kinds, range of the mean HU difference lesion - organ.
        solid_hu / ground_glass_hu: absolute HU ranges of lung nodules.
        min_depth_fraction: a centre lies at least this fraction of the lesion radius inside
            the organ (0.5: at most about half of the lesion is cut by the organ surface).
    """

    kinds: tuple[str, ...] = ("homogeneous", "rim", "necrotic")
    kind_probs: tuple[float, ...] = (0.4, 0.3, 0.3)
    count: tuple[int, int] = (1, 8)
    diameter_mm: tuple[float, float] = (3.0, 40.0)
    first_min_diameter_mm: float = 10.0
    contrast_hu: tuple[float, float] = (-95.0, -25.0)
    solid_hu: tuple[float, float] = (-100.0, 100.0)
    ground_glass_hu: tuple[float, float] = (-750.0, -300.0)
    min_depth_fraction: float = 0.6


#: Hypodense liver masses (contrast -20..-100 HU relative to the parenchyma).
LIVER_LESIONS = LesionStyle()
#: Lung nodules: solid (-100..+100 HU) and ground-glass (-750..-300 HU), 3-30 mm.
LUNG_NODULES = LesionStyle(
    kinds=("solid", "ground_glass"),
    kind_probs=(0.6, 0.4),
    count=(1, 5),
    diameter_mm=(3.0, 30.0),
    first_min_diameter_mm=8.0,
    min_depth_fraction=0.5,
)


@dataclass(frozen=True)
class Lesion:
    """One lesion, in mm of the array frame.

    Attributes:
        centre: (3,) centre (mm).
        diameter_mm: longest diameter bound (mm): the lesion fits in a sphere of this diameter.
        offsets: (L, 3) lobe centres relative to ``centre`` (mm).
        radii: (L, 3) lobe semi-axes (mm), in the frame of ``rotation``.
        rotation: 3x3 rotation of the lobes' axes.
        wobble: boundary perturbation.
        kind: appearance (see :class:`LesionStyle`).
        hu: mean HU of the lesion body (absolute).
        pattern_hu: HU added to the rim (``"rim"``, > 0) or core (``"necrotic"``, < 0).
        texture: smooth intra-lesion HU texture.
    """

    centre: np.ndarray
    diameter_mm: float
    offsets: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    wobble: Wobble
    kind: str
    hu: float
    pattern_hu: float
    texture: SmoothField

    def bbox(self):
        r = self.diameter_mm / 2.0
        return self.centre - r, self.centre + r

    def field(self, X, Y, Z):
        d = (X - np.float32(self.centre[0]), Y - np.float32(self.centre[1]), Z - np.float32(self.centre[2]))
        R = self.rotation.astype(np.float32)
        q = [R[0, k] * d[0] + R[1, k] * d[1] + R[2, k] * d[2] for k in range(3)]
        out = None
        scale = self.diameter_mm / 2.0
        for off, rad in zip(self.offsets, self.radii):
            o = self.rotation.T @ off
            n = np.sqrt(sum(((q[k] - np.float32(o[k])) / np.float32(rad[k])) ** 2 for k in range(3)))
            out = n if out is None else smooth_min(out, n, 0.2)
        # The wobble is a function of the direction from the centre, so it moves the
        # boundary smoothly without creating holes.
        r = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        inv = 1.0 / np.maximum(r, np.float32(1e-3 * scale))
        g = self.wobble(q[0] * inv, q[1] * inv, q[2] * inv)
        return out / (1.0 + g)

    def appearance(self, X, Y, Z, f):
        """HU values (before mean correction) of the lesion at level ``f`` of its field."""
        values = np.float32(self.hu) + self.texture(X, Y, Z)
        if self.kind == "rim":
            values = values + np.float32(self.pattern_hu) * (f > 0.7)
        elif self.kind == "necrotic":
            values = values + np.float32(self.pattern_hu) * (f < 0.5)
        return values


def random_lesion(rng: np.random.Generator, centre, diameter_mm: float, kind: str, hu: float) -> Lesion:
    """A random lobulated lesion whose longest diameter is at most ``diameter_mm``."""
    n_lobes = int(rng.integers(1, 5))
    offsets = [np.zeros(3)]
    radii = [rng.uniform(0.75, 1.0, size=3)]
    for _ in range(n_lobes - 1):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offsets.append(direction * rng.uniform(0.25, 0.5))
        radii.append(rng.uniform(0.4, 0.7, size=3))
    offsets, radii = np.array(offsets), np.array(radii)
    wobble = random_wobble(rng, amplitude=rng.uniform(0.05, 0.15), n_terms=5, freq=(1.5, 4.0))
    # Scale the unit-size lesion so that its farthest possible point lies at diameter / 2.
    extent = np.max(np.linalg.norm(offsets, axis=1) + radii.max(axis=1)) * (1.0 + wobble.max_amplitude)
    scale = diameter_mm / 2.0 / extent
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if kind == "rim":
        pattern = rng.uniform(30.0, 60.0)
    elif kind == "necrotic":
        pattern = -rng.uniform(25.0, 50.0)
    else:
        pattern = 0.0
    texture = random_smooth_field(rng, std=rng.uniform(3.0, 8.0), wavelength_mm=(4.0, 12.0), n_terms=4)
    return Lesion(
        centre=np.asarray(centre, dtype=float),
        diameter_mm=float(diameter_mm),
        offsets=offsets * scale,
        radii=radii * scale,
        rotation=q,
        wobble=wobble,
        kind=kind,
        hu=float(hu),
        pattern_hu=float(pattern),
        texture=texture,
    )


def sample_lesions(
    organ_mask: np.ndarray,
    spacing,
    rng: np.random.Generator,
    style: LesionStyle = LIVER_LESIONS,
    reference_hu: float = 60.0,
    origin=(0.0, 0.0, 0.0),
) -> list[Lesion]:
    """Draw lesions inside an organ: count, sizes, positions and appearance.

    Centres are drawn among organ voxels that lie at least ``min_depth_fraction`` of the
    lesion radius inside the organ, at least the sum of both radii (+2 mm) from previous
    lesions, so lesions stay distinct (one connected component each) for detection studies.
    A lesion that finds no room is shrunk and, below the minimum size, dropped.

    Args:
        organ_mask: (H, W, D) bool organ mask.
        spacing: voxel size (mm).
        rng: random generator.
        style: the lesion population.
        reference_hu: typical HU of the organ, for lesions defined by contrast.
        origin: position (mm) of voxel (0, 0, 0) in the frame of the returned lesions.

    Returns:
        The lesions (possibly fewer than drawn when the organ is small).
    """
    organ_mask = np.asarray(organ_mask, dtype=bool)
    spacing = np.asarray(spacing, dtype=float)
    if not organ_mask.any():
        return []
    bbox = ndimage.find_objects(organ_mask.astype(np.uint8))[0]
    sub = np.pad(organ_mask[bbox], 1)
    depth = ndimage.distance_transform_edt(sub, sampling=spacing)[1:-1, 1:-1, 1:-1]
    offset_vox = np.array([s.start for s in bbox], dtype=float)
    candidates = np.argwhere(depth > 0)
    cand_depth = depth[depth > 0]
    cand_mm = (candidates + offset_vox) * spacing + np.asarray(origin, dtype=float)

    n = int(rng.integers(style.count[0], style.count[1] + 1))
    lo, hi = np.log(style.diameter_mm[0]), np.log(style.diameter_mm[1])
    lesions: list[Lesion] = []
    for i in range(n):
        d_min = style.first_min_diameter_mm if i == 0 else style.diameter_mm[0]
        diameter = float(np.exp(rng.uniform(max(lo, np.log(d_min)), hi)))
        placed = None
        while diameter >= d_min and placed is None:
            r = diameter / 2.0
            ok = cand_depth >= max(style.min_depth_fraction * r, 0.5 * spacing.min())
            for other in lesions:
                ok &= np.linalg.norm(cand_mm - other.centre, axis=1) >= r + other.diameter_mm / 2.0 + 2.0
            idx = np.flatnonzero(ok)
            if len(idx):
                placed = cand_mm[idx[rng.integers(len(idx))]] + rng.uniform(-0.5, 0.5, size=3) * spacing
            else:
                diameter *= 0.7
        if placed is None:
            continue
        kind = str(rng.choice(style.kinds, p=style.kind_probs))
        if kind == "solid":
            hu = rng.uniform(*style.solid_hu)
        elif kind == "ground_glass":
            hu = rng.uniform(*style.ground_glass_hu)
        else:
            hu = reference_hu + rng.uniform(*style.contrast_hu)
        lesions.append(random_lesion(rng, placed, diameter, kind, hu))
    return lesions


def paint_lesions(
    image: np.ndarray,
    organ_mask: np.ndarray,
    lesions: list[Lesion],
    spacing,
    origin=(0.0, 0.0, 0.0),
    reference_hu: float | None = None,
    edge_mm: float = 0.7,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Paint lesions into an image, only inside the organ.

    Each lesion replaces the voxels it covers by its own appearance, blended over a soft
    edge of about ``edge_mm``. For lesions defined relative to the organ (homogeneous, rim,
    necrotic) the pattern and texture are shifted so that the mean HU of the lesion's voxels
    is exactly the drawn ``hu``; absolute nodules keep their mean at ``hu`` too.

    Args:
        image: (H, W, D) HU image (float or int); not modified.
        organ_mask: (H, W, D) bool; lesion voxels and changes are confined to it.
        lesions: from :func:`sample_lesions` (same mm frame as ``origin``/``spacing``).
        spacing: voxel size (mm).
        origin: position (mm) of voxel (0, 0, 0).
        reference_hu: organ HU used to report contrasts; default the organ's median.
        edge_mm: width of the blended boundary (mm).

    Returns:
        ``(new_image, lesion_mask, records)``: a float32 image, a bool (H, W, D) mask of
        lesion voxels, and one dict per lesion (centre_mm, diameter_mm, kind, hu, contrast_hu,
        n_voxels, volume_ml).
    """
    organ_mask = np.asarray(organ_mask, dtype=bool)
    out = np.asarray(image, dtype=np.float32).copy()
    lesion_mask = np.zeros(organ_mask.shape, dtype=bool)
    if reference_hu is None:
        reference_hu = float(np.median(out[organ_mask])) if organ_mask.any() else 0.0
    grid = Grid(shape=organ_mask.shape, spacing=tuple(float(s) for s in spacing), origin=tuple(float(o) for o in origin))
    records = []
    for lesion in lesions:
        record = {
            "centre_mm": [round(float(c), 2) for c in lesion.centre],
            "diameter_mm": round(lesion.diameter_mm, 2),
            "kind": lesion.kind,
            "hu": round(lesion.hu, 1),
            "contrast_hu": round(lesion.hu - reference_hu, 1),
            "n_voxels": 0,
            "volume_ml": 0.0,
        }
        records.append(record)
        sl = grid.slices_for_box(*lesion.bbox())
        if sl is None:
            continue
        X, Y, Z = grid.coords(sl)
        f = lesion.field(X, Y, Z)
        organ = organ_mask[sl]
        inside = (f < 1.0) & organ
        if not inside.any():
            continue
        values = np.broadcast_to(lesion.appearance(X, Y, Z, f), f.shape)
        values = values - (values[inside].mean() - np.float32(lesion.hu))
        edge = np.float32(edge_mm / (lesion.diameter_mm / 2.0))
        weight = np.clip((1.0 - f) / edge + 0.5, 0.0, 1.0) * organ
        region = out[sl]
        region += weight * (values - region)
        lesion_mask[sl] |= inside
        n_vox = int(np.count_nonzero(inside))
        record["n_voxels"] = n_vox
        record["volume_ml"] = round(n_vox * float(np.prod(spacing)) / 1000.0, 4)
    return out, lesion_mask, records


def add_lesions(
    image: np.ndarray,
    organ_mask: np.ndarray,
    rng: np.random.Generator,
    spacing=(1.0, 1.0, 1.0),
    style: LesionStyle = LIVER_LESIONS,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Add random lesions to ``image`` inside ``organ_mask`` (the reusable one-call entry point).

    Args:
        image: (H, W, D) HU image.
        organ_mask: (H, W, D) bool mask of the host organ (liver, pancreas, kidney, lung).
        rng: random generator; the same state gives the same lesions.
        spacing: voxel size (mm).
        style: lesion population, e.g. :data:`LIVER_LESIONS` or :data:`LUNG_NODULES`.

    Returns:
        ``(new_image, lesion_mask, records)`` as :func:`paint_lesions`; the image is float32
        and unchanged outside the lesions.
    """
    organ_mask = np.asarray(organ_mask, dtype=bool)
    if organ_mask.shape != np.shape(image):
        raise ValueError(f"organ mask shape {organ_mask.shape} differs from image shape {np.shape(image)}")
    reference = float(np.median(np.asarray(image)[organ_mask])) if organ_mask.any() else 0.0
    lesions = sample_lesions(organ_mask, spacing, rng, style=style, reference_hu=reference)
    return paint_lesions(image, organ_mask, lesions, spacing, reference_hu=reference)
