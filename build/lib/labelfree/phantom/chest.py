"""The chest phantom: a non-contrast chest CT from the lung bases to the upper thorax.

World coordinates as in :mod:`phantom.abdomen` (RAS+ mm, body axis at x = y = 0). The lungs
fill the thoracic cavity except the mediastinum (heart, aorta, trachea, oesophagus, fat);
the liver and spleen domes rise from below under the diaphragm. Each lung holds a branching
vessel tree of soft-tissue density grown from its hilum.

Label convention (documented choice): label 1 "lung" is the lung parenchyma *including* the
intrapulmonary vessels (as in usual lung masks); the trachea and main bronchi are airways of
the mediastinum and are *excluded*.

Painting order: skin, subcutaneous fat, chest wall muscle, cavity fat, lungs, mediastinal fat,
heart, aorta, oesophagus, airways, diaphragm domes, lung vessel trees, spine, sternum, ribs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .geometry import Grid, make_grid, rotation_matrix
from .render import Canvas, MaskLookup
from .shapes import Ellipsoid, EllipticCylinder, SmoothField, Tube, grow_vessel_tree, random_smooth_field, random_wobble
from .skeleton import BodyWallLayers, Spine, paint_ribs, spine_behind
from .tissues import CHEST_LABELS as L
from .tissues import Tissue as T

#: Field of view (mm, x y z) and its centre (world mm) of the chest phantom.
CHEST_FOV_MM = (340.0, 260.0, 180.0)
CHEST_FOV_CENTRE_MM = (0.0, 0.0, 0.0)
#: Spacing (mm) of the fixed grid on which vessel trees and nodules are placed.
REFERENCE_SPACING_MM = (2.5, 2.5, 2.5)

_SOFT = (T.VISCERAL_FAT, T.LUNG)


@dataclass(frozen=True)
class ChestAnatomy(BodyWallLayers):
    """Every random choice of one chest case (shapes in world mm, HU values)."""

    body: EllipticCylinder
    skin_mm: float
    fat_mm: tuple[float, float]
    muscle_mm: tuple[float, float]
    spine: Spine
    lungs: tuple  # (right, left) Ellipsoids
    mediastinum: EllipticCylinder
    heart: Ellipsoid
    aorta: Tube
    oesophagus: EllipticCylinder
    trachea: Tube
    bronchi: tuple  # (right, left) Tubes
    domes: tuple  # (liver dome, spleen dome) Ellipsoids
    sternum: EllipticCylinder
    rib_levels: np.ndarray
    rib_slope: float
    hu: dict
    lung_gradient_hu: float
    textures: dict
    noise_std: float


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def design_chest(rng: np.random.Generator) -> ChestAnatomy:
    """Draw the anatomy of one chest case."""
    a, b = _u(rng, 150.0, 164.0), _u(rng, 105.0, 120.0)
    body = EllipticCylinder(centre_xy=(0.0, 0.0), semi_axes=(a, b), exponent=_u(rng, 2.0, 2.3))
    skin = 2.5
    fat = (_u(rng, 8.0, 20.0), _u(rng, 8.0, 18.0))
    muscle = (_u(rng, 10.0, 14.0), _u(rng, 10.0, 16.0))
    spine = spine_behind(-b + skin + fat[1], rng)
    cavity_a = a - skin - fat[0] - muscle[0]
    cavity_b = b - skin - fat[1] - muscle[1]
    y_front = cavity_b  # inner surface of the anterior chest wall

    def J(point, mm=4.0):
        return np.asarray(point, dtype=float) + rng.uniform(-mm, mm, size=3)

    lungs = tuple(
        Ellipsoid(centre=J((s * cavity_a * 0.6, -8.0, 30.0)), radii=np.array([cavity_a * 0.62, cavity_b * 1.1, 150.0]),
                  wobble=random_wobble(rng, 0.05))
        for s in (1.0, -1.0)
    )
    mediastinum = EllipticCylinder(centre_xy=(_u(rng, -4, 4), 0.0), semi_axes=(_u(rng, 16.0, 22.0), cavity_b + 5.0))
    heart = Ellipsoid(
        centre=J((-22.0, y_front - 45.0, -45.0), 6.0), radii=np.array([62.0, 46.0, 55.0]) * rng.uniform(0.9, 1.1, 3),
        rotation=rotation_matrix((0.2, 0.1, _u(rng, 0.3, 0.6))), wobble=random_wobble(rng, 0.06),
    )
    y_trachea = spine.y_body + 38.0
    aorta = Tube(
        np.array([J((5.0, y_front - 50.0, -35.0)), J((10.0, y_front - 55.0, 25.0)), J((0.0, y_trachea + 8.0, 58.0)),
                  J((-20.0, spine.y_body + 10.0, 55.0)), (-22.0, spine.y_body + 8.0, 20.0), (-22.0, spine.y_body + 6.0, -95.0)]),
        np.array([15.0, 15.0, 13.0, 12.0, 12.0, 11.0]) * _u(rng, 0.9, 1.1),
    )
    oesophagus = EllipticCylinder(centre_xy=(-5.0, spine.y_body + 26.0), semi_axes=(8.0, 6.0))
    carina = np.array([0.0, y_trachea - 4.0, 38.0 + _u(rng, -6, 6)])
    trachea = Tube(np.array([[0.0, y_trachea, 100.0], carina]), np.array([9.5, 9.0]) * _u(rng, 0.9, 1.1))
    bronchi = (
        Tube(np.array([carina, carina + J((38.0, -8.0, -22.0), 3.0)]), np.array([7.5, 6.5])),
        Tube(np.array([carina, carina + J((-44.0, -10.0, -28.0), 3.0)]), np.array([6.5, 5.5])),
    )
    domes = (
        Ellipsoid(centre=J((60.0, -5.0, -150.0), 6.0), radii=np.array([105.0, 110.0, 85.0]), wobble=random_wobble(rng, 0.04)),
        Ellipsoid(centre=J((-60.0, -5.0, -165.0), 6.0), radii=np.array([100.0, 110.0, 85.0]), wobble=random_wobble(rng, 0.04)),
    )
    sternum = EllipticCylinder(centre_xy=(0.0, y_front + 6.0), semi_axes=(14.0, 6.0))
    spacing = _u(rng, 22.0, 26.0)
    z_levels = np.arange(-150.0, 150.0, spacing) + _u(rng, 0, spacing)
    rib_levels = np.c_[z_levels, np.full(len(z_levels), np.deg2rad(158.0)), np.ones(len(z_levels))]

    hu = {
        T.AIR: -1000.0, T.SKIN: _u(rng, 10, 40), T.SUBCUTANEOUS_FAT: _u(rng, -110, -90), T.MUSCLE: _u(rng, 40, 55),
        T.VISCERAL_FAT: _u(rng, -105, -85), T.CORTICAL_BONE: _u(rng, 800, 1000), T.CANCELLOUS_BONE: _u(rng, 330, 420),
        T.LUNG: _u(rng, -870, -830), T.LUNG_VESSEL: _u(rng, 30, 50), T.AIRWAY_LUMEN: -1000.0,
        T.AIRWAY_WALL: _u(rng, 20, 50), T.HEART: _u(rng, 35, 50), T.ARTERY: _u(rng, 35, 50), T.GUT_WALL: _u(rng, 35, 50),
        T.LIVER: _u(rng, 50, 65), T.SPLEEN: _u(rng, 40, 55), T.CSF: _u(rng, 5, 20), T.DISC: _u(rng, 70, 100),
    }
    textures = {T.LUNG: random_smooth_field(rng, std=_u(rng, 5.0, 10.0), wavelength_mm=(6.0, 25.0))}
    return ChestAnatomy(
        body=body, skin_mm=skin, fat_mm=fat, muscle_mm=muscle, spine=spine, lungs=lungs, mediastinum=mediastinum,
        heart=heart, aorta=aorta, oesophagus=oesophagus, trachea=trachea, bronchi=bronchi, domes=domes, sternum=sternum,
        rib_levels=rib_levels, rib_slope=_u(rng, 0.35, 0.45), hu=hu, lung_gradient_hu=_u(rng, 15.0, 30.0),
        textures=textures, noise_std=_u(rng, 12.0, 18.0),
    )


def reference_grid(fov_mm=CHEST_FOV_MM) -> Grid:
    """The fixed grid on which vessel trees and nodules are placed."""
    return make_grid(fov_mm, REFERENCE_SPACING_MM, centre=CHEST_FOV_CENTRE_MM)


def render_chest(anatomy: ChestAnatomy, grid: Grid, trees=(), reference: bool = False) -> Canvas:
    """Rasterise the chest on ``grid`` (noise-free).

    Args:
        anatomy: the case's anatomy.
        grid: output grid (RAS voxel order).
        trees: world-space vessel segments to paint inside the lungs.
        reference: skip the ribs and textures (fast render for placing trees and nodules).
    """
    hu = anatomy.hu
    c = Canvas(grid, background_hu=hu[T.AIR])
    c.paint_layers([
        (anatomy.body, T.SKIN, hu[T.SKIN]),
        (anatomy.subcutaneous, T.SUBCUTANEOUS_FAT, hu[T.SUBCUTANEOUS_FAT]),
        (anatomy.muscle_wall, T.MUSCLE, hu[T.MUSCLE]),
        (anatomy.cavity, T.VISCERAL_FAT, hu[T.VISCERAL_FAT]),
    ])
    lung_hu = hu[T.LUNG]
    if reference:
        lung_value = lung_hu
    else:
        texture: SmoothField = anatomy.textures[T.LUNG]
        gradient = np.float32(anatomy.lung_gradient_hu / anatomy.cavity.semi_axes[1])

        # Dependent (posterior) lung is denser in a supine patient.
        def lung_value(X, Y, Z):
            return np.float32(lung_hu) - gradient * Y + texture(X, Y, Z)

    for lung, code in zip(anatomy.lungs, (L["right_lung"], L["left_lung"])):
        c.paint(lung, T.LUNG, lung_value, organ=code, within=(T.VISCERAL_FAT,))
    c.paint(anatomy.mediastinum, T.VISCERAL_FAT, hu[T.VISCERAL_FAT], within=(T.LUNG,))
    # Pericardial fat around the heart, then the heart itself.
    c.paint(anatomy.heart.scaled(1.12), T.VISCERAL_FAT, hu[T.VISCERAL_FAT], within=(T.LUNG,))
    c.paint(anatomy.heart, T.HEART, hu[T.HEART], organ=L["heart"], within=_SOFT)
    c.paint(anatomy.aorta, T.ARTERY, hu[T.ARTERY], organ=L["aorta"], within=_SOFT + (T.HEART,))
    c.paint(anatomy.oesophagus, T.GUT_WALL, hu[T.GUT_WALL], within=_SOFT)
    for tube in (anatomy.trachea,) + tuple(anatomy.bronchi):
        wall = Tube(tube.points, np.asarray(tube.radii) + 2.0)
        c.paint(wall, T.AIRWAY_WALL, hu[T.AIRWAY_WALL], organ=L["airway"], within=_SOFT + (T.ARTERY, T.GUT_WALL))
    for tube in (anatomy.trachea,) + tuple(anatomy.bronchi):
        c.paint(tube, T.AIRWAY_LUMEN, hu[T.AIRWAY_LUMEN], organ=L["airway"], within=(T.AIRWAY_WALL,))
    c.paint(anatomy.domes[0], T.LIVER, hu[T.LIVER], within=_SOFT + (T.HEART,))
    c.paint(anatomy.domes[1], T.SPLEEN, hu[T.SPLEEN], within=_SOFT + (T.HEART,))
    for seg in trees:
        c.paint(seg.as_tube(), T.LUNG_VESSEL, hu[T.LUNG_VESSEL], organ=None, within=(T.LUNG,))
    anatomy.spine.paint(c, hu)
    if not reference:
        c.paint(anatomy.sternum, T.CORTICAL_BONE, hu[T.CORTICAL_BONE], within=(T.MUSCLE, T.VISCERAL_FAT, T.SUBCUTANEOUS_FAT))
        c.paint(anatomy.sternum.shrunk(2.0, 2.0), T.CANCELLOUS_BONE, hu[T.CANCELLOUS_BONE], within=(T.CORTICAL_BONE,))
        paint_ribs(c, anatomy.muscle_wall, anatomy.muscle_mm, anatomy.rib_levels, anatomy.rib_slope, hu,
                   within=(T.MUSCLE, T.SUBCUTANEOUS_FAT, T.VISCERAL_FAT))
    return c


def lung_mask(canvas: Canvas) -> np.ndarray:
    """Bool (H, W, D) mask of label 1: both lungs, intrapulmonary vessels included."""
    return (canvas.organ == L["right_lung"]) | (canvas.organ == L["left_lung"])


def grow_lung_trees(anatomy: ChestAnatomy, reference: Canvas, rng: np.random.Generator) -> list:
    """Pulmonary vessel trees, from each hilum outwards (world segments)."""
    segments = []
    for side, (lung, bronchus) in enumerate(zip(anatomy.lungs, anatomy.bronchi)):
        code = (L["right_lung"], L["left_lung"])[side]
        inside = MaskLookup(reference.grid, ndimage.binary_erosion(reference.organ == code, iterations=1))
        s = 1.0 if side == 0 else -1.0
        hilum = np.asarray(bronchus.points[-1], dtype=float)
        root = None
        for t in np.linspace(0.0, 1.0, 30):
            p = hilum + t * (np.asarray(lung.centre) - hilum)
            if inside(p[None])[0]:
                root = p
                break
        if root is None:
            continue
        for direction in ((0.3 * s, 0.0, 1.0), (s, 0.2, 0.0), (0.3 * s, -0.3, -1.0), (0.4 * s, 1.0, -0.2),
                          (0.4 * s, -1.0, -0.3)):
            segments += grow_vessel_tree(rng, root, direction, 7.0, inside, min_radius=0.9, max_segments=160,
                                         length_per_radius=5.0, branch_angle_deg=(15.0, 40.0))
    return segments
