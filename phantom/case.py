"""One phantom case: anatomy -> voxel grid -> lesions -> CT image, in the requested orientation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import abdomen, chest
from .geometry import SUPPORTED_ORIENTATIONS, make_grid, oriented_affine, reorient, world_to_voxel
from .lesions import LIVER_LESIONS, LUNG_NODULES, paint_lesions, sample_lesions
from .render import to_ct
from .tissues import BTCV_LABELS, CHEST_LABELS, Tissue

#: Default voxel spacing (mm): anisotropic like clinical CT (thin in-plane, thick slices).
DEFAULT_SPACING = (1.0, 1.0, 2.5)
KINDS = ("abdomen", "chest")


@dataclass
class PhantomCase:
    """A generated case. All arrays are (H, W, D) in the voxel order of ``affine``.

    Attributes:
        kind: ``"abdomen"`` or ``"chest"``.
        seed: the case seed.
        image: int16 HU image.
        label: uint8 task label: abdomen 0 background / 1 liver / 2 liver tumour; chest
            0 background / 1 lung / 2 nodule.
        organs: uint8 organ map: BTCV numbering for the abdomen (see
            :data:`phantom.tissues.BTCV_LABELS`), :data:`phantom.tissues.CHEST_LABELS` for the chest.
        tissue: uint8 :class:`phantom.tissues.Tissue` map (for HU statistics).
        affine: 4x4 voxel-to-world (RAS+ mm) affine.
        spacing: voxel size (mm) along the array axes.
        orientation: axis codes of the arrays (``"RAS"`` or ``"LPS"``).
        lesions: one dict per lesion (world centre and voxel centre, diameter, kind, HU,
            contrast to the host organ, voxel count, volume).
        volumes_ml: organ volumes (mL) by organ name.
        noise_std: noise standard deviation (HU) of the image.
        hu: nominal HU of each tissue present, by tissue name.
    """

    kind: str
    seed: int
    image: np.ndarray
    label: np.ndarray
    organs: np.ndarray
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
) -> PhantomCase:
    """Generate one phantom CT case.

    The seed fixes the anatomy, the lesions and the noise through three independent streams
    (``numpy.random.SeedSequence(seed).spawn(3)``): the same seed with and without
    ``lesions`` gives the same anatomy and noise, and the anatomy is defined in world
    coordinates, so it is the same at every spacing and orientation (vessel trees and
    lesion positions are placed on a fixed reference grid for the same reason).

    Args:
        kind: ``"abdomen"`` (liver task, label 0/1[/2]) or ``"chest"`` (lung task, label 0/1[/2]).
        seed: case seed (non-negative int).
        lesions: add liver tumours (abdomen) or lung nodules (chest), label 2.
        spacing: voxel size (mm), 3 positive numbers.
        orientation: ``"RAS"`` or ``"LPS"`` voxel order of the arrays.
        fov_mm: field of view (mm, x y z); default 340 x 260 x 180 (both kinds).

    Returns:
        The :class:`PhantomCase`.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if orientation.upper() not in SUPPORTED_ORIENTATIONS:
        raise ValueError(f"orientation must be one of {SUPPORTED_ORIENTATIONS}, got {orientation!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    anatomy_ss, lesion_ss, noise_ss = np.random.SeedSequence(int(seed)).spawn(3)
    rng = np.random.default_rng(anatomy_ss)
    if kind == "abdomen":
        style = LIVER_LESIONS
        anatomy = abdomen.design_abdomen(rng)
        anatomy, reference = abdomen.calibrate(anatomy)
        trees = abdomen.grow_liver_trees(anatomy, reference, rng)
        grid = make_grid(fov_mm or abdomen.ABDOMEN_FOV_MM, spacing, centre=abdomen.ABDOMEN_FOV_CENTRE_MM)
        canvas = abdomen.render_abdomen(anatomy, grid, trees)
        host_ref = reference.organ == BTCV_LABELS["liver"]
        host = canvas.organ == BTCV_LABELS["liver"]
        host_hu = anatomy.hu[Tissue.LIVER]
        organ_names = BTCV_LABELS
    else:
        style = LUNG_NODULES
        anatomy = chest.design_chest(rng)
        reference = chest.render_chest(anatomy, chest.reference_grid(), reference=True)
        trees = chest.grow_lung_trees(anatomy, reference, rng)
        grid = make_grid(fov_mm or chest.CHEST_FOV_MM, spacing, centre=chest.CHEST_FOV_CENTRE_MM)
        canvas = chest.render_chest(anatomy, grid, trees)
        host_ref = chest.lung_mask(reference)
        host = chest.lung_mask(canvas)
        host_hu = anatomy.hu[Tissue.LUNG]
        organ_names = CHEST_LABELS

    label = host.astype(np.uint8)
    records = []
    hu = canvas.hu
    if lesions:
        specs = sample_lesions(host_ref, reference.grid.spacing, np.random.default_rng(lesion_ss), style=style,
                               reference_hu=host_hu, origin=reference.grid.origin)
        hu, lesion_mask, records = paint_lesions(canvas.hu, host, specs, grid.spacing, origin=grid.origin,
                                                 reference_hu=host_hu)
        canvas.tissue[lesion_mask] = Tissue.LESION
        label[lesion_mask] = 2
    image = to_ct(hu, grid.spacing, np.random.default_rng(noise_ss), anatomy.noise_std)

    orientation = orientation.upper()
    affine = oriented_affine(grid, orientation)
    for rec in records:
        rec["centre_world_mm"] = rec.pop("centre_mm")
        rec["centre_voxel"] = [round(float(v), 2) for v in world_to_voxel(affine, rec["centre_world_mm"])[0]]
    volume_voxel = float(np.prod(grid.spacing)) / 1000.0
    counts = np.bincount(canvas.organ.ravel(), minlength=256)
    volumes = {name: round(float(counts[code]) * volume_voxel, 2) for name, code in organ_names.items()}
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    return PhantomCase(
        kind=kind,
        seed=int(seed),
        image=reorient(image, orientation),
        label=reorient(label, orientation),
        organs=reorient(canvas.organ, orientation),
        tissue=reorient(canvas.tissue, orientation),
        affine=affine,
        spacing=tuple(float(z) for z in zooms),
        orientation=orientation,
        lesions=records,
        volumes_ml=volumes,
        noise_std=float(anatomy.noise_std),
        hu={Tissue(k).name.lower(): round(float(v), 1) for k, v in anatomy.hu.items()},
    )
