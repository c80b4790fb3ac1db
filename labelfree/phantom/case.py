"""One phantom case: anatomy -> voxel grid -> lesions -> CT image, in the requested orientation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from . import abdomen, chest
from .geometry import SUPPORTED_ORIENTATIONS, Grid, make_grid, oriented_affine, reorient, world_to_voxel
from .labels import TASK_ORGANS, multiorgan_label, organ_mask, single_organ_label
from .lesions import (
    KIDNEY_LESIONS,
    LIVER_LESIONS,
    LUNG_NODULES,
    PANCREAS_LESIONS,
    LesionStyle,
    paint_lesions,
    sample_lesions,
)
from .render import Canvas, to_ct
from .tissues import BTCV_LABELS, CHEST_LABELS, Tissue

#: Default voxel spacing (mm): anisotropic like clinical CT (thin in-plane, thick slices).
DEFAULT_SPACING = (1.0, 1.0, 2.5)
KINDS = ("abdomen", "chest")
#: Task organs of each kind; the first is the default.
ORGANS = {"abdomen": TASK_ORGANS, "chest": ("lung",)}


@dataclass(frozen=True)
class LesionHost:
    """How lesions of one organ are drawn and painted.

    Attributes:
        style: the lesion population.
        contrast_tissue: lesion contrasts are relative to this tissue's nominal HU (the
            enhancing cortex for the kidney).
        grows_into: tissues outside the organ that exophytic lesions may occupy.
    """

    style: LesionStyle
    contrast_tissue: Tissue
    grows_into: tuple = ()


LESION_HOSTS = {
    "liver": LesionHost(LIVER_LESIONS, Tissue.LIVER),
    "pancreas": LesionHost(PANCREAS_LESIONS, Tissue.PANCREAS),
    # Exophytic renal masses push into the perirenal fat, not into neighbouring organs.
    "kidney": LesionHost(KIDNEY_LESIONS, Tissue.KIDNEY_CORTEX, grows_into=(Tissue.VISCERAL_FAT,)),
    "lung": LesionHost(LUNG_NODULES, Tissue.LUNG),
}


@dataclass
class PhantomCase:
    """A generated case. All arrays are (H, W, D) in the voxel order of ``affine``.

    Attributes:
        kind: ``"abdomen"`` or ``"chest"``.
        organ: the task organ of ``label`` and host of the lesions: ``"liver"``,
            ``"pancreas"`` or ``"kidney"`` (abdomen), ``"lung"`` (chest).
        seed: the case seed.
        image: int16 HU image.
        label: uint8 task label: 0 background / 1 organ / 2 tumour of the organ (kidney:
            both kidneys); chest 0 background / 1 lung / 2 nodule.
        organs: uint8 organ map: BTCV numbering for the abdomen (see
            :data:`phantom.tissues.BTCV_LABELS`; a kidney tumour's voxels outside the kidney
            belong to that kidney), :data:`phantom.tissues.CHEST_LABELS` for the chest.
        multiorgan: abdomen: uint8 FreeTumor multi-organ label (0 background, 1 liver,
            2 liver tumour, 3 pancreas, 4 pancreas tumour, 5 kidney, 6 kidney tumour; see
            :mod:`phantom.labels`); chest: None.
        tissue: uint8 :class:`phantom.tissues.Tissue` map (for HU statistics).
        affine: 4x4 voxel-to-world (RAS+ mm) affine.
        spacing: voxel size (mm) along the array axes.
        orientation: axis codes of the arrays (``"RAS"`` or ``"LPS"``).
        lesions: one dict per lesion (organ, world centre and voxel centre, diameter, kind,
            HU, contrast to the host organ, exophytic flag, voxel counts, volume).
        volumes_ml: organ volumes (mL) by organ name (from ``organs``).
        noise_std: noise standard deviation (HU) of the image.
        hu: nominal HU of each tissue present, by tissue name.
    """

    kind: str
    organ: str
    seed: int
    image: np.ndarray
    label: np.ndarray
    organs: np.ndarray
    multiorgan: np.ndarray | None
    tissue: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    orientation: str
    lesions: list = field(default_factory=list)
    volumes_ml: dict = field(default_factory=dict)
    noise_std: float = 0.0
    hu: dict = field(default_factory=dict)


def generate_case(
    kind: str = "abdomen",
    seed: int = 0,
    lesions: bool = False,
    spacing=DEFAULT_SPACING,
    orientation: str = "RAS",
    fov_mm=None,
    organ: str | None = None,
) -> PhantomCase:
    """Generate one phantom CT case.

    The seed fixes the anatomy, the lesions and the noise through three independent streams
    (``numpy.random.SeedSequence(seed).spawn(3)``): the same seed with and without
    ``lesions`` gives the same anatomy and noise, and the anatomy is defined in world
    coordinates, so it is the same at every spacing and orientation (vessel trees and
    lesion positions are placed on a fixed reference grid for the same reason).

    Args:
        kind: ``"abdomen"`` or ``"chest"``.
        seed: case seed (non-negative int).
        lesions: add tumours to ``organ`` (label 2): liver masses, pancreatic tumours,
            kidney tumours and cysts (some exophytic), or lung nodules.
        spacing: voxel size (mm), 3 positive numbers.
        orientation: ``"RAS"`` or ``"LPS"`` voxel order of the arrays.
        fov_mm: field of view (mm, x y z); default 340 x 260 x 180 (both kinds).
        organ: task organ of ``label`` and host of the lesions: ``"liver"`` (default),
            ``"pancreas"`` or ``"kidney"`` for the abdomen, ``"lung"`` (default) for the chest.

    Returns:
        The :class:`PhantomCase`.
    """
    organ = _checked_arguments(kind, seed, orientation, organ)
    anatomy_ss, lesion_ss, noise_ss = np.random.SeedSequence(int(seed)).spawn(3)
    scene = _build_scene(kind, organ, np.random.default_rng(anatomy_ss), spacing, fov_mm)
    host_spec = LESION_HOSTS[organ]
    host_hu = scene.anatomy.hu[host_spec.contrast_tissue]
    if lesions:
        hu, lesion_mask, records = _add_lesions(scene, host_spec, host_hu, np.random.default_rng(lesion_ss))
    else:
        hu, lesion_mask, records = scene.canvas.hu, np.zeros(scene.host.shape, dtype=bool), []
    multiorgan, label = _task_labels(kind, organ, scene, lesion_mask)
    image = to_ct(hu, scene.grid.spacing, np.random.default_rng(noise_ss), scene.anatomy.noise_std)

    orientation = orientation.upper()
    affine = oriented_affine(scene.grid, orientation)
    _place_records(records, organ, affine)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    canvas = scene.canvas
    return PhantomCase(
        kind=kind,
        organ=organ,
        seed=int(seed),
        image=reorient(image, orientation),
        label=reorient(label, orientation),
        organs=reorient(canvas.organ, orientation),
        multiorgan=None if multiorgan is None else reorient(multiorgan, orientation),
        tissue=reorient(canvas.tissue, orientation),
        affine=affine,
        spacing=tuple(float(z) for z in zooms),
        orientation=orientation,
        lesions=records,
        volumes_ml=_organ_volumes(canvas.organ, scene.organ_names, scene.grid.spacing),
        noise_std=float(scene.anatomy.noise_std),
        hu={Tissue(k).name.lower(): round(float(v), 1) for k, v in scene.anatomy.hu.items()},
    )


def _checked_arguments(kind: str, seed: int, orientation: str, organ: str | None) -> str:
    """Refuse unknown kinds, organs and orientations and negative seeds; returns the task organ."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    organ = ORGANS[kind][0] if organ is None else organ
    if organ not in ORGANS[kind]:
        raise ValueError(f"organ of a {kind} case must be one of {ORGANS[kind]}, got {organ!r}")
    if orientation.upper() not in SUPPORTED_ORIENTATIONS:
        raise ValueError(f"orientation must be one of {SUPPORTED_ORIENTATIONS}, got {orientation!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return organ


@dataclass
class _Scene:
    """The rendered anatomy of a case before lesions and noise (arrays (H, W, D) in RAS voxel order).

    Attributes:
        anatomy: every random choice of the case (HU per tissue, noise level, ...).
        reference: the render on the fixed reference grid (lesions are placed there).
        grid: the output grid.
        canvas: the render on the output grid (HU, tissue and organ maps).
        host_reference, host: the task organ's mask on the reference and on the output grid.
        organ_names: organ-map code of each organ name.
    """

    anatomy: abdomen.AbdomenAnatomy | chest.ChestAnatomy
    reference: Canvas
    grid: Grid
    canvas: Canvas
    host_reference: np.ndarray
    host: np.ndarray
    organ_names: dict


def _build_scene(kind: str, organ: str, rng: np.random.Generator, spacing, fov_mm) -> _Scene:
    """Draw the anatomy from ``rng`` and render it on the reference grid and on the output grid (``spacing`` mm)."""
    if kind == "abdomen":
        anatomy = abdomen.design_abdomen(rng)
        anatomy, reference = abdomen.calibrate(anatomy)
        trees = abdomen.grow_liver_trees(anatomy, reference, rng)
        grid = make_grid(fov_mm or abdomen.ABDOMEN_FOV_MM, spacing, centre=abdomen.ABDOMEN_FOV_CENTRE_MM)
        canvas = abdomen.render_abdomen(anatomy, grid, trees)
        return _Scene(anatomy, reference, grid, canvas, organ_mask(reference.organ, organ),
                      organ_mask(canvas.organ, organ), BTCV_LABELS)
    anatomy = chest.design_chest(rng)
    reference = chest.render_chest(anatomy, chest.reference_grid(), reference=True)
    trees = chest.grow_lung_trees(anatomy, reference, rng)
    grid = make_grid(fov_mm or chest.CHEST_FOV_MM, spacing, centre=chest.CHEST_FOV_CENTRE_MM)
    canvas = chest.render_chest(anatomy, grid, trees)
    return _Scene(anatomy, reference, grid, canvas, chest.lung_mask(reference), chest.lung_mask(canvas), CHEST_LABELS)


def _add_lesions(scene: _Scene, host_spec: LesionHost, host_hu: float, rng: np.random.Generator):
    """Draw lesions on the reference grid and paint them on the output grid.

    The canvas's tissue map marks the lesion voxels and its organ map gives exophytic lesion
    voxels to their organ (in place).

    Returns:
        ``(HU volume with the lesions, lesion mask, one record per lesion)``.
    """
    canvas, grid, reference = scene.canvas, scene.grid, scene.reference
    specs = sample_lesions(scene.host_reference, reference.grid.spacing, rng, style=host_spec.style,
                           reference_hu=host_hu, origin=reference.grid.origin)
    outside = np.isin(canvas.tissue, host_spec.grows_into) if host_spec.grows_into else None
    hu, lesion_mask, records = paint_lesions(canvas.hu, scene.host, specs, grid.spacing, origin=grid.origin,
                                             reference_hu=host_hu, outside_mask=outside)
    canvas.tissue[lesion_mask] = Tissue.LESION
    _give_outside_voxels_to_host(canvas.organ, lesion_mask, scene.host)
    return hu, lesion_mask, records


def _task_labels(kind: str, organ: str, scene: _Scene, lesion_mask: np.ndarray):
    """``(multi-organ label or None, task label)``: abdomen labels from the organ and tissue maps, chest ones
    from the lung mask (1) and the lesions (2)."""
    if kind == "abdomen":
        multiorgan = multiorgan_label(scene.canvas.organ, scene.canvas.tissue)
        return multiorgan, single_organ_label(multiorgan, organ)
    label = scene.host.astype(np.uint8)
    label[lesion_mask] = 2
    return None, label


def _place_records(records: list, organ: str, affine: np.ndarray) -> None:
    """Name each lesion's organ and give its centre in world mm and in voxels of ``affine`` (in place)."""
    for rec in records:
        rec["organ"] = organ
        rec["centre_world_mm"] = rec.pop("centre_mm")
        rec["centre_voxel"] = [round(float(v), 2) for v in world_to_voxel(affine, rec["centre_world_mm"])[0]]


def _organ_volumes(organs: np.ndarray, organ_names: dict, spacing) -> dict:
    """Volume (mL, 2 decimals) of each named organ of the organ map at voxel size ``spacing`` mm."""
    volume_voxel = float(np.prod(spacing)) / 1000.0
    counts = np.bincount(organs.ravel(), minlength=256)
    return {name: round(float(counts[code]) * volume_voxel, 2) for name, code in organ_names.items()}


def _give_outside_voxels_to_host(organs: np.ndarray, lesion_mask: np.ndarray, host: np.ndarray) -> None:
    """Give the organ-map code of its organ to each lesion voxel outside the host organ (in place).

    An exophytic tumour belongs to the organ it grows from (KiTS labels kidney + tumour);
    with two kidneys, each lesion takes the code most frequent among its voxels inside.
    """
    outside = lesion_mask & ~host
    if not outside.any():
        return
    components, _ = ndimage.label(lesion_mask)
    for k in np.unique(components[outside]):
        lesion = components == k
        codes = np.bincount(organs[lesion & host], minlength=256)
        organs[lesion & outside] = int(np.argmax(codes))
