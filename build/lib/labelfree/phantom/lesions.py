"""An independent lesion model: lobulated masses painted into an organ.

This model deliberately differs from the project's synthetic-tumour transform (deformed
ellipsoids with a Gaussian-filtered noise texture, subtracted from the image): a lesion here
is a smooth union of a few overlapping spheroids with a wobbled boundary, and it *replaces*
the tissue it occupies with its own appearance (homogeneous, rim-enhancing, necrotic core,
water-like cyst, solid nodule or ground glass). Training on one model and testing on the
other is a real generalisation test.

A lesion stays inside its organ, except an *exophytic* one (kidney): its centre lies near the
organ surface and the part that bulges out of the organ occupies the surrounding soft tissue
given by the caller (perirenal fat), as long as it stays connected to the part inside.

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
            ``"rim"`` (enhancing rim), ``"necrotic"`` (darker core), ``"cyst"`` (round,
            smooth, near water), ``"solid"`` or ``"ground_glass"`` (lung nodules).
        kind_probs: probabilities of ``kinds``.
        count: inclusive range of the number of lesions per case.
        diameter_mm: range of the longest diameter (mm); drawn log-uniformly.
        first_min_diameter_mm: the first lesion is at least this large, so every lesion case
            has a lesion that is visible at coarse spacings.
        contrast_hu: for relative kinds, range of the mean HU difference lesion - organ.
        solid_hu / ground_glass_hu: absolute HU ranges of lung nodules.
        cyst_hu: absolute HU range of cysts (simple cysts are near water).
        min_depth_fraction: a centre lies at least this fraction of the lesion radius inside
            the organ (0.5: at most about half of the lesion is cut by the organ surface).
        exophytic_prob: probability that a lesion of at least ``exophytic_min_diameter_mm``
            is exophytic (grows out of the organ contour); 0 for organs where lesions stay inside.
        exophytic_min_diameter_mm: smallest diameter (mm) of an exophytic lesion.
        exophytic_depth_fraction: (min, max) depth of an exophytic lesion's centre below the
            organ surface, as fractions of its radius (0.1-0.45: more than half of the radius
            bulges out).
    """

    kinds: tuple[str, ...] = ("homogeneous", "rim", "necrotic")
    kind_probs: tuple[float, ...] = (0.4, 0.3, 0.3)
    count: tuple[int, int] = (1, 8)
    diameter_mm: tuple[float, float] = (3.0, 40.0)
    first_min_diameter_mm: float = 10.0
    contrast_hu: tuple[float, float] = (-95.0, -25.0)
    solid_hu: tuple[float, float] = (-100.0, 100.0)
    ground_glass_hu: tuple[float, float] = (-750.0, -300.0)
    cyst_hu: tuple[float, float] = (0.0, 20.0)
    min_depth_fraction: float = 0.6
    exophytic_prob: float = 0.0
    exophytic_min_diameter_mm: float = 15.0
    exophytic_depth_fraction: tuple[float, float] = (0.1, 0.45)


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
#: Pancreatic tumours (adenocarcinoma-like): hypo-attenuating, -20..-60 HU relative to the
#: enhancing pancreas, 5-30 mm, usually solitary, some with a necrotic centre.
PANCREAS_LESIONS = LesionStyle(
    kinds=("homogeneous", "necrotic"),
    kind_probs=(0.7, 0.3),
    count=(1, 2),
    diameter_mm=(5.0, 30.0),
    first_min_diameter_mm=10.0,
    contrast_hu=(-60.0, -20.0),
    min_depth_fraction=0.5,
)
#: Kidney tumours (renal cell carcinoma-like) and cysts, 5-40 mm: solid masses hypo- or
#: iso-attenuating relative to the enhancing cortex, some necrotic, cysts near water (0-20 HU);
#: lesions of 15 mm or more are exophytic with probability 0.5 (as DiffTumor's unclipped
#: medium/large kidney tumours).
KIDNEY_LESIONS = LesionStyle(
    kinds=("homogeneous", "necrotic", "cyst"),
    kind_probs=(0.4, 0.25, 0.35),
    count=(1, 3),
    diameter_mm=(5.0, 40.0),
    first_min_diameter_mm=12.0,
    contrast_hu=(-100.0, -5.0),
    cyst_hu=(0.0, 20.0),
    min_depth_fraction=0.6,
    exophytic_prob=0.5,
    exophytic_min_diameter_mm=15.0,
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
        exophytic: may grow out of the organ into the surrounding tissue given to
            :func:`paint_lesions`.
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
    exophytic: bool = False

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


def random_lesion(
    rng: np.random.Generator, centre, diameter_mm: float, kind: str, hu: float, exophytic: bool = False
) -> Lesion:
    """A random lobulated lesion (a round one for cysts) whose longest diameter is at most ``diameter_mm``."""
    cyst = kind == "cyst"
    n_lobes = 1 if cyst else int(rng.integers(1, 5))
    offsets = [np.zeros(3)]
    radii = [rng.uniform(0.75, 1.0, size=3)]
    for _ in range(n_lobes - 1):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offsets.append(direction * rng.uniform(0.25, 0.5))
        radii.append(rng.uniform(0.4, 0.7, size=3))
    offsets, radii = np.array(offsets), np.array(radii)
    wobble = random_wobble(rng, amplitude=rng.uniform(*((0.02, 0.05) if cyst else (0.05, 0.15))), n_terms=5,
                           freq=(1.5, 4.0))
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
    # Cyst fluid is homogeneous: only a trace of texture.
    texture = random_smooth_field(rng, std=rng.uniform(*((0.5, 2.0) if cyst else (3.0, 8.0))),
                                  wavelength_mm=(4.0, 12.0), n_terms=4)
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
        exophytic=bool(exophytic),
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
    lesion radius inside the organ (exophytic lesions: between the two
    ``exophytic_depth_fraction`` of the radius below the surface), at least the sum of both
    radii (+2 mm) from previous lesions, so lesions stay distinct (one connected component
    each) for detection studies. A lesion that finds no room is shrunk and, below the
    minimum size, dropped.

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
        # Drawn only for styles that have exophytic lesions, so the others' draws are unchanged.
        exophytic = (style.exophytic_prob > 0 and diameter >= style.exophytic_min_diameter_mm
                     and bool(rng.random() < style.exophytic_prob))
        placed = None
        while diameter >= d_min and placed is None:
            r = diameter / 2.0
            if exophytic:
                shallow, deep = style.exophytic_depth_fraction
                # The deep bound never falls below the outermost voxel layer of the grid.
                ok = (cand_depth >= shallow * r) & (cand_depth <= max(deep * r, 1.5 * spacing.max()))
            else:
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
        elif kind == "cyst":
            hu = rng.uniform(*style.cyst_hu)
        else:
            hu = reference_hu + rng.uniform(*style.contrast_hu)
        lesions.append(random_lesion(rng, placed, diameter, kind, hu, exophytic=exophytic))
    return lesions


def paint_lesions(
    image: np.ndarray,
    organ_mask: np.ndarray,
    lesions: list[Lesion],
    spacing,
    origin=(0.0, 0.0, 0.0),
    reference_hu: float | None = None,
    edge_mm: float = 0.7,
    outside_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Paint lesions into an image, inside the organ (and, for exophytic ones, next to it).

    Each lesion replaces the voxels it covers by its own appearance, blended over a soft
    edge of about ``edge_mm``. For lesions defined relative to the organ (homogeneous, rim,
    necrotic) the pattern and texture are shifted so that the mean HU of the lesion's voxels
    is exactly the drawn ``hu``; absolute lesions (nodules, cysts) keep their mean at ``hu`` too.
    An exophytic lesion also occupies the voxels of ``outside_mask`` it covers that are
    connected (through the lesion) to its part inside the organ; without ``outside_mask`` it
    is confined to the organ like the others.

    Args:
        image: (H, W, D) HU image (float or int); not modified.
        organ_mask: (H, W, D) bool; lesion voxels and changes are confined to it (and to
            ``outside_mask`` for exophytic lesions).
        lesions: from :func:`sample_lesions` (same mm frame as ``origin``/``spacing``).
        spacing: voxel size (mm).
        origin: position (mm) of voxel (0, 0, 0).
        reference_hu: organ HU used to report contrasts; default the organ's median.
        edge_mm: width of the blended boundary (mm).
        outside_mask: (H, W, D) bool voxels outside the organ that exophytic lesions may
            occupy (e.g. the perirenal fat); None: nowhere.

    Returns:
        ``(new_image, lesion_mask, records)``: a float32 image, a bool (H, W, D) mask of
        lesion voxels, and one dict per lesion (centre_mm, diameter_mm, kind, hu, contrast_hu,
        exophytic, n_voxels, n_voxels_outside_organ, volume_ml).
    """
    organ_mask = np.asarray(organ_mask, dtype=bool)
    if outside_mask is not None:
        outside_mask = np.asarray(outside_mask, dtype=bool)
        if outside_mask.shape != organ_mask.shape:
            raise ValueError(f"outside mask shape {outside_mask.shape} differs from organ mask shape {organ_mask.shape}")
        outside_mask = outside_mask & ~organ_mask
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
            "exophytic": lesion.exophytic,
            "n_voxels": 0,
            "n_voxels_outside_organ": 0,
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
        paintable = organ
        if lesion.exophytic and outside_mask is not None:
            inside, paintable = _grow_outside(f < 1.0, organ, outside_mask[sl])
        values = np.broadcast_to(lesion.appearance(X, Y, Z, f), f.shape)
        values = values - (values[inside].mean() - np.float32(lesion.hu))
        edge = np.float32(edge_mm / (lesion.diameter_mm / 2.0))
        weight = np.clip((1.0 - f) / edge + 0.5, 0.0, 1.0) * paintable
        region = out[sl]
        region += weight * (values - region)
        lesion_mask[sl] |= inside
        n_vox = int(np.count_nonzero(inside))
        record["n_voxels"] = n_vox
        record["n_voxels_outside_organ"] = int(np.count_nonzero(inside & ~organ))
        record["volume_ml"] = round(n_vox * float(np.prod(spacing)) / 1000.0, 4)
    return out, lesion_mask, records


def _grow_outside(body: np.ndarray, organ: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of an exophytic lesion and the voxels its soft edge may change.

    Args:
        body: bool lesion body (field < 1) over the lesion's box.
        organ: bool organ mask over the box.
        outside: bool voxels outside the organ the lesion may occupy.

    Returns:
        ``(lesion, paintable)``: the lesion's voxels in the organ plus those outside that are
        connected to them (face connectivity, so no island in the fat is labelled), and the
        organ plus a one-voxel rim around the outside part (the soft edge) within ``outside``.
    """
    candidate = body & (organ | outside)
    components, _ = ndimage.label(candidate)
    touching = np.unique(components[candidate & organ])
    lesion = np.isin(components, touching[touching > 0])
    out_part = lesion & ~organ
    paintable = organ | (outside & ndimage.binary_dilation(out_part)) if out_part.any() else organ
    return lesion, paintable


def add_lesions(
    image: np.ndarray,
    organ_mask: np.ndarray,
    rng: np.random.Generator,
    spacing=(1.0, 1.0, 1.0),
    style: LesionStyle = LIVER_LESIONS,
    outside_mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Add random lesions to ``image`` inside ``organ_mask`` (the reusable one-call entry point).

    Args:
        image: (H, W, D) HU image.
        organ_mask: (H, W, D) bool mask of the host organ (liver, pancreas, kidney, lung).
        rng: random generator; the same state gives the same lesions.
        spacing: voxel size (mm).
        style: lesion population, e.g. :data:`LIVER_LESIONS`, :data:`PANCREAS_LESIONS`,
            :data:`KIDNEY_LESIONS` or :data:`LUNG_NODULES`.
        outside_mask: (H, W, D) bool tissue around the organ that exophytic lesions may
            grow into (e.g. perirenal fat); None confines every lesion to the organ.

    Returns:
        ``(new_image, lesion_mask, records)`` as :func:`paint_lesions`; the image is float32
        and unchanged outside the lesions (and their one-voxel soft edge).
    """
    organ_mask = np.asarray(organ_mask, dtype=bool)
    if organ_mask.shape != np.shape(image):
        raise ValueError(f"organ mask shape {organ_mask.shape} differs from image shape {np.shape(image)}")
    reference = float(np.median(np.asarray(image)[organ_mask])) if organ_mask.any() else 0.0
    lesions = sample_lesions(organ_mask, spacing, rng, style=style, reference_hu=reference)
    return paint_lesions(image, organ_mask, lesions, spacing, reference_hu=reference, outside_mask=outside_mask)
