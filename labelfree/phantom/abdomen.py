"""The abdomen phantom: a contrast-enhanced (portal venous phase) upper abdomen CT.

All anatomy is drawn from the case's random generator in world coordinates (RAS+ mm, body
axis at x = y = 0, +x = patient's right) and rasterised by :mod:`phantom.render`. Organ
sizes are calibrated on a fixed reference grid so that volumes land in physiological ranges
(liver 1.2-2.0 L, kidneys 120-180 mL, pancreas 60-100 mL) whatever the output spacing.

Painting order (later structures override earlier ones, organs only inside the cavity):
skin, subcutaneous fat, abdominal wall muscle, visceral fat (the cavity), paraspinal and
psoas muscles, bowel and colon, stomach, spleen, liver, gallbladder, pancreas, kidneys,
portal and splenic veins, IVC, aorta, liver vessel trees, spine, ribs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .geometry import Grid, make_grid, rotation_matrix
from .render import Canvas, MaskLookup
from .skeleton import BodyWallLayers, Spine, paint_ribs, spine_behind
from .shapes import (
    Ellipsoid,
    EllipticCylinder,
    SmoothField,
    Tube,
    Union,
    grow_vessel_tree,
    random_smooth_field,
    random_wobble,
)
from .tissues import BTCV_LABELS as L
from .tissues import Tissue as T

#: Field of view (mm, x y z) of the abdomen phantom: an adult abdomen from the liver dome to
#: the lower kidney poles.
ABDOMEN_FOV_MM = (340.0, 260.0, 180.0)
#: World position (mm) of the centre of the abdomen field of view.
ABDOMEN_FOV_CENTRE_MM = (0.0, 0.0, 5.0)
#: Spacing (mm) of the fixed reference grid used for volume calibration and for placing
#: vessel trees and lesions independently of the output spacing.
REFERENCE_SPACING_MM = (2.5, 2.5, 2.5)

#: Tissues that abdominal organs may occupy: the visceral fat of the cavity and the organs
#: painted before them (later organs indent earlier ones; muscle and bone stay intact).
CAVITY_TISSUES = (
    T.VISCERAL_FAT, T.GUT_WALL, T.GUT_FLUID, T.GAS, T.SPLEEN, T.PANCREAS, T.LIVER, T.GALLBLADDER,
    T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA, T.RENAL_SINUS_FAT, T.VEIN, T.ARTERY,
)


@dataclass(frozen=True)
class HollowTube:
    """A gas/fluid-filled tube with a wall (stomach, bowel loop).

    Gas collects above the fluid in the non-dependent (anterior, +y) part of a supine patient.
    """

    tube: Tube
    wall_mm: float
    gas_level_y: float  # world y (mm) above which the lumen holds gas


@dataclass(frozen=True)
class AbdomenAnatomy(BodyWallLayers):
    """Every random choice of one abdomen case (shapes in world mm, HU values)."""

    body: EllipticCylinder
    skin_mm: float
    fat_mm: tuple[float, float]
    muscle_mm: tuple[float, float]
    spine: Spine
    paraspinal: tuple
    psoas: tuple
    bowel: tuple
    stomach: HollowTube
    spleen: Ellipsoid
    pancreas: Tube
    liver: Union
    liver_anchor: np.ndarray
    gallbladder: Ellipsoid
    kidneys: tuple  # (right, left) Ellipsoids
    renal_sinus: tuple
    portal_vein: Tube
    splenic_vein: Tube
    ivc: EllipticCylinder
    aorta: EllipticCylinder
    rib_levels: np.ndarray  # (K, 3): posterior z (mm), end angle (rad from posterior midline), section scale
    rib_slope: float
    hu: dict
    textures: dict
    noise_std: float
    targets_ml: dict
    scales: dict

    # -- organs at their calibrated size ----------------------------------------------
    def scaled_liver(self) -> Union:
        return self.liver.scaled(self.scales["liver"], self.liver_anchor)

    def scaled_gallbladder(self) -> Ellipsoid:
        return self.gallbladder.scaled(self.scales["liver"], self.liver_anchor)

    def scaled_spleen(self) -> Ellipsoid:
        return self.spleen.scaled(self.scales["spleen"])

    def scaled_pancreas(self) -> Tube:
        return self.pancreas.scaled(self.scales["pancreas"])

    def scaled_kidney(self, side: int) -> tuple[Ellipsoid, Ellipsoid]:
        key = ("right_kidney", "left_kidney")[side]
        kidney = self.kidneys[side]
        s = self.scales[key]
        return kidney.scaled(s), self.renal_sinus[side].scaled(s, kidney.centre)


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def _jitter(rng, point, mm):
    return np.asarray(point, dtype=float) + rng.uniform(-mm, mm, size=3)


@dataclass(frozen=True)
class _BodyWall:
    """The body outline (superellipse, semi-axes ``a`` x ``b`` mm) and its wall layers (mm)."""

    body: EllipticCylinder
    skin_mm: float
    fat_mm: tuple[float, float]
    muscle_mm: tuple[float, float]

    @property
    def a(self) -> float:
        return self.body.semi_axes[0]

    @property
    def b(self) -> float:
        return self.body.semi_axes[1]


class _Landmarks:
    """Points of the reference body (a = 157, b = 116 mm) scaled to this body and jittered (world mm)."""

    def __init__(self, rng: np.random.Generator, wall: _BodyWall) -> None:
        self.rng = rng
        self.ka, self.kb = wall.a / 157.0, wall.b / 116.0

    def __call__(self, x, y, z, jitter=5.0) -> np.ndarray:
        return _jitter(self.rng, (x * self.ka, y * self.kb, z), jitter)


def design_abdomen(rng: np.random.Generator) -> AbdomenAnatomy:
    """Draw the anatomy of one abdomen case (uncalibrated sizes).

    The parts are drawn from ``rng`` one after the other in this order, which fixes the
    anatomy of every seed: reordering the calls below changes every phantom case.
    """
    wall = _draw_body_wall(rng)
    P = _Landmarks(rng, wall)
    spine = spine_behind(-wall.b + wall.skin_mm + wall.fat_mm[1], rng)
    bowel = _draw_bowel(rng, P)
    stomach = _draw_stomach(rng, P)
    spleen = _draw_spleen(rng, P)
    pancreas = _draw_pancreas(rng, P)
    anchor, liver, gallbladder = _draw_liver(rng, P)
    kidneys, sinus = _draw_kidneys(rng, P, spine.y_body)
    portal_vein, splenic_vein, ivc, aorta = _draw_great_vessels(rng, spine.y_body, pancreas.points, anchor)
    rib_levels = _draw_rib_levels(rng)
    hu = _draw_tissue_hu(rng)
    textures = _draw_textures(rng)
    targets = _draw_volume_targets(rng)
    return AbdomenAnatomy(
        body=wall.body, skin_mm=wall.skin_mm, fat_mm=wall.fat_mm, muscle_mm=wall.muscle_mm, spine=spine,
        paraspinal=_paraspinal_muscles(spine), psoas=_psoas_muscles(spine), bowel=bowel, stomach=stomach,
        spleen=spleen, pancreas=pancreas, liver=liver, liver_anchor=anchor, gallbladder=gallbladder,
        kidneys=kidneys, renal_sinus=sinus, portal_vein=portal_vein, splenic_vein=splenic_vein, ivc=ivc,
        aorta=aorta, rib_levels=rib_levels, rib_slope=_u(rng, 0.4, 0.5), hu=hu, textures=textures,
        noise_std=_u(rng, 12.0, 18.0), targets_ml=targets, scales={k: 1.0 for k in targets},
    )


def _draw_body_wall(rng: np.random.Generator) -> _BodyWall:
    a, b = _u(rng, 150.0, 164.0), _u(rng, 110.0, 122.0)
    body = EllipticCylinder(centre_xy=(0.0, 0.0), semi_axes=(a, b), exponent=_u(rng, 2.1, 2.5))
    fat = (_u(rng, 10.0, 24.0), _u(rng, 10.0, 22.0))
    muscle = (_u(rng, 9.0, 13.0), _u(rng, 8.0, 11.0))
    return _BodyWall(body=body, skin_mm=2.5, fat_mm=fat, muscle_mm=muscle)


def _paraspinal_muscles(spine: Spine) -> tuple:
    return tuple(
        EllipticCylinder(centre_xy=(s * 30.0, spine.y_canal - 8.0), semi_axes=(25.0, 24.0)) for s in (1.0, -1.0)
    )


def _psoas_muscles(spine: Spine) -> tuple:
    y_vb = spine.y_body
    return tuple(
        Tube(points=np.array([[s * 30.0, y_vb + 2.0, 20.0], [s * 38.0, y_vb + 8.0, -95.0]]), radii=np.array([6.0, 19.0]))
        for s in (1.0, -1.0)
    )


def _draw_bowel(rng: np.random.Generator, P: _Landmarks) -> tuple:
    """Small-bowel loops low and anterior, then the colon frame."""
    ka, kb = P.ka, P.kb
    loops = []
    for _ in range(int(rng.integers(6, 11))):
        start = np.array([_u(rng, -70, 70) * ka, _u(rng, 0, 60) * kb, _u(rng, -88, -30)])
        pts = [start]
        for _ in range(2):
            step = rng.normal(size=3)
            step /= np.linalg.norm(step)
            pts.append(pts[-1] + step * _u(rng, 18, 30))
        r = _u(rng, 9.0, 13.0)
        gas = start[1] + r * _u(rng, 0.2, 1.2) if rng.random() < 0.5 else 1e4
        loops.append(HollowTube(Tube(np.array(pts), np.full(3, r)), wall_mm=2.5, gas_level_y=gas))
    colon_pts = np.array(
        [P(92, 8, -95), P(95, 10, -35), P(80, 35, -14), P(30, 62, -20), P(-30, 60, -16), P(-82, 30, 4),
         P(-96, 4, -30), P(-92, 4, -95)]
    )
    colon_r = _u(rng, 17.0, 23.0)
    loops.append(
        HollowTube(Tube(colon_pts, np.full(len(colon_pts), colon_r)), wall_mm=3.0,
                   gas_level_y=float(colon_pts[:, 1].mean() + colon_r * _u(rng, -0.5, 0.5)))
    )
    return tuple(loops)


def _draw_stomach(rng: np.random.Generator, P: _Landmarks) -> HollowTube:
    stomach_pts = np.array([P(-58, -8, 62), P(-60, 20, 42), P(-40, 48, 22), P(-8, 50, 8), P(14, 36, 2)])
    return HollowTube(
        Tube(stomach_pts, np.array([34.0, 30.0, 24.0, 17.0, 10.0]) * _u(rng, 0.85, 1.1)),
        wall_mm=4.0,
        gas_level_y=_u(rng, 20.0, 45.0) * P.kb,
    )


def _draw_spleen(rng: np.random.Generator, P: _Landmarks) -> Ellipsoid:
    return Ellipsoid(
        centre=P(-86, -40, 32), radii=np.array([24.0, 55.0, 45.0]) * rng.uniform(0.9, 1.1, 3),
        rotation=rotation_matrix((_u(rng, 0.1, 0.4), 0.0, _u(rng, -0.7, -0.4))),
        wobble=random_wobble(rng, 0.12),
    )


def _draw_pancreas(rng: np.random.Generator, P: _Landmarks) -> Tube:
    """Head (at the duodenum, patient's right) to tail (at the spleen), lobulated."""
    pancreas_pts = np.array([P(32, 4, -32, 3), P(14, 18, -24, 3), P(-8, 22, -18, 3), P(-36, 12, -12, 3),
                             P(-62, -4, -2, 3), P(-78, -12, 6, 3)])
    lobulation = np.c_[rng.uniform(0.05, 0.1, 3), rng.uniform(10.0, 30.0, 3), rng.uniform(0, 2 * np.pi, 3)]
    return Tube(pancreas_pts, np.array([19.0, 13.0, 12.0, 12.0, 10.0, 8.0]), lobulation=lobulation)


def _draw_liver(rng: np.random.Generator, P: _Landmarks) -> tuple[np.ndarray, Union, Ellipsoid]:
    """``(anchor, liver, gallbladder)``: two smoothly joined lobes around the anchor point, the gallbladder under them."""
    anchor = P(68, 0, 14)
    right_lobe = Ellipsoid(
        centre=anchor, radii=np.array([58.0, 76.0, 58.0]) * rng.uniform(0.92, 1.08, 3),
        rotation=rotation_matrix(rng.uniform(-0.15, 0.15, 3)), wobble=random_wobble(rng, 0.12),
    )
    left_lobe = Ellipsoid(
        centre=anchor + _jitter(rng, (-76 * P.ka, 38 * P.kb, 20), 6.0), radii=np.array([52.0, 30.0, 32.0]) * rng.uniform(0.85, 1.15, 3),
        rotation=rotation_matrix((0.0, _u(rng, -0.2, 0.2), _u(rng, -0.4, 0.1))), wobble=random_wobble(rng, 0.15),
    )
    liver = Union(parts=(right_lobe, left_lobe), smooth=0.3)
    gallbladder = Ellipsoid(
        centre=anchor + _jitter(rng, (-20, 40, -40), 4.0), radii=np.array([14.0, 30.0, 14.0]) * _u(rng, 0.8, 1.1),
        rotation=rotation_matrix((_u(rng, 0.4, 0.8), 0.0, _u(rng, -0.3, 0.3))), wobble=random_wobble(rng, 0.05),
    )
    return anchor, liver, gallbladder


def _draw_kidneys(rng: np.random.Generator, P: _Landmarks, y_vb: float) -> tuple[tuple, tuple]:
    """``((right, left) kidney Ellipsoids, their renal sinus Ellipsoids)``, beside the vertebral body at ``y_vb`` mm."""
    kidneys, sinus = [], []
    for side, s, z in ((0, 1.0, -28.0), (1, -1.0, -18.0)):
        centre = _jitter(rng, (s * 76.0 * P.ka, y_vb - 6.0, z), 4.0)
        rot = rotation_matrix((_u(rng, -0.3, -0.1), s * _u(rng, -0.35, -0.15), s * _u(rng, 0.2, 0.5)))
        kidney = Ellipsoid(centre=centre, radii=np.array([27.0, 24.0, 52.0]) * rng.uniform(0.92, 1.08, 3),
                           rotation=rot, wobble=random_wobble(rng, 0.05))
        hilum = centre + rot @ np.array([-s * 14.0, 4.0, 0.0])
        kidneys.append(kidney)
        sinus.append(Ellipsoid(centre=hilum, radii=np.array([11.0, 10.0, 26.0]), rotation=rot))
    return tuple(kidneys), tuple(sinus)


def _draw_great_vessels(rng: np.random.Generator, y_vb: float, pancreas_pts: np.ndarray, anchor: np.ndarray):
    """``(portal vein, splenic vein, IVC, aorta)``: the veins behind the pancreas join at the portal confluence."""
    aorta_r = _u(rng, 10.0, 12.5)
    aorta = EllipticCylinder(centre_xy=(-16.0 + _u(rng, -3, 3), y_vb + 17.0 + aorta_r - 5.0), semi_axes=(aorta_r, aorta_r))
    ivc = EllipticCylinder(centre_xy=(24.0 + _u(rng, -3, 3), y_vb + 22.0), semi_axes=(_u(rng, 11, 15), _u(rng, 8, 10)))
    confluence = np.array([8.0, pancreas_pts[1, 1] - 14.0, pancreas_pts[1, 2] - 2.0])
    portal_vein = Tube(np.stack([confluence, anchor + np.array([-30.0, -8.0, -14.0])]), np.array([7.0, 6.5]))
    splenic_vein = Tube(
        np.stack([pancreas_pts[5] + (0, -12, 0), pancreas_pts[3] + (0, -14, 0), confluence]), np.array([4.0, 4.5, 5.0])
    )
    return portal_vein, splenic_vein, ivc, aorta


def _draw_rib_levels(rng: np.random.Generator) -> np.ndarray:
    """(K, 3): posterior z (mm, shifted together), end angle (rad from the posterior midline), section scale."""
    rib_levels = np.array([[100.0, np.deg2rad(165), 1.0], [70.0, np.deg2rad(150), 1.0],
                           [40.0, np.deg2rad(125), 0.95], [12.0, np.deg2rad(95), 0.85]])
    rib_levels[:, 0] += _u(rng, -10, 10)
    return rib_levels


def _draw_tissue_hu(rng: np.random.Generator) -> dict:
    """Nominal HU of every tissue."""
    # Portal-venous phase, like the enhancing vessels and kidney cortex below (and like LiTS / the
    # original's -21..189 HU window): the liver enhances to about 100 HU, the gallbladder stays near
    # water. An unenhanced liver (55-70 HU) would put hypodense tumours at the density of bile.
    liver_hu = _u(rng, 95.0, 115.0)
    return {
        T.AIR: -1000.0, T.SKIN: _u(rng, 10, 40), T.SUBCUTANEOUS_FAT: _u(rng, -110, -90),
        T.MUSCLE: _u(rng, 45, 58), T.VISCERAL_FAT: _u(rng, -105, -85), T.CORTICAL_BONE: _u(rng, 800, 1000),
        T.CANCELLOUS_BONE: _u(rng, 330, 420), T.LIVER: liver_hu, T.LIVER_VESSEL: _u(rng, 160, 195),
        T.SPLEEN: liver_hu + _u(rng, 5, 20), T.KIDNEY_CORTEX: _u(rng, 160, 200), T.KIDNEY_MEDULLA: _u(rng, 100, 130),
        T.RENAL_SINUS_FAT: _u(rng, -100, -80), T.PANCREAS: _u(rng, 85, 105), T.GUT_WALL: _u(rng, 40, 60),
        T.GUT_FLUID: _u(rng, 5, 25), T.GAS: -1000.0, T.ARTERY: _u(rng, 150, 200), T.VEIN: _u(rng, 120, 160),
        T.GALLBLADDER: _u(rng, 0, 20), T.CSF: _u(rng, 5, 20), T.DISC: _u(rng, 70, 100),
    }


def _draw_textures(rng: np.random.Generator) -> dict:
    """Smooth HU fields added inside the parenchymal organs."""
    return {
        T.LIVER: random_smooth_field(rng, std=_u(rng, 2.0, 5.0)),
        T.SPLEEN: random_smooth_field(rng, std=_u(rng, 2.0, 4.0)),
        T.KIDNEY_CORTEX: random_smooth_field(rng, std=4.0),
        T.PANCREAS: random_smooth_field(rng, std=_u(rng, 4.0, 8.0), wavelength_mm=(5.0, 15.0)),
    }


def _draw_volume_targets(rng: np.random.Generator) -> dict:
    """Organ volumes (mL) that :func:`calibrate` scales the organs to."""
    return {
        "liver": _u(rng, 1350.0, 1800.0), "spleen": _u(rng, 150.0, 250.0), "pancreas": _u(rng, 68.0, 92.0),
        "right_kidney": _u(rng, 132.0, 168.0), "left_kidney": _u(rng, 132.0, 168.0),
    }


#: Volume exponent of each calibrated organ's scale (ellipsoids scale in 3D, tubes in 2D).
_VOLUME_EXPONENT = {"liver": 3.0, "spleen": 3.0, "pancreas": 2.0, "right_kidney": 3.0, "left_kidney": 3.0}
_ORGAN_CODE = {"liver": L["liver"], "spleen": L["spleen"], "pancreas": L["pancreas"],
               "right_kidney": L["right_kidney"], "left_kidney": L["left_kidney"]}


def reference_grid(fov_mm=ABDOMEN_FOV_MM) -> Grid:
    """The fixed grid on which sizes are calibrated and trees/lesions are placed."""
    return make_grid(fov_mm, REFERENCE_SPACING_MM, centre=ABDOMEN_FOV_CENTRE_MM)


def calibrate(anatomy: AbdomenAnatomy, iterations: int = 3) -> tuple[AbdomenAnatomy, Canvas]:
    """Rescale the organs until their volumes on the reference grid match their targets.

    Organs carve each other (kidneys indent the liver, veins groove the pancreas), so the
    volumes are measured on a full render rather than computed from the shapes alone.

    Returns:
        The calibrated anatomy and its reference-grid render (without vessel trees).
    """
    grid = reference_grid()
    top = grid.axis(2)[-1] - 6.0
    for _ in range(iterations):
        canvas = render_abdomen(anatomy, grid, trees=(), reference=True)
        scales = dict(anatomy.scales)
        for name, target in anatomy.targets_ml.items():
            volume = max(canvas.volume_ml(_ORGAN_CODE[name]), 1.0)
            # The clamp keeps a shape that cannot reach its target from being blown up.
            scales[name] = float(np.clip(scales[name] * (target / volume) ** (1.0 / _VOLUME_EXPONENT[name]), 0.7, 1.4))
        anatomy = replace(anatomy, scales=scales)
        # Keep the liver dome inside the field of view: a liver cut by the top slice would
        # make its label and volume depend on the field of view.
        liver_z = np.nonzero((canvas.organ == L["liver"]).any(axis=(0, 1)))[0]
        if len(liver_z) and grid.axis(2)[liver_z[-1]] > top:
            anatomy = _shift_liver(anatomy, top - grid.axis(2)[liver_z[-1]])
    return anatomy, render_abdomen(anatomy, grid, trees=(), reference=True)


def _shift_liver(anatomy: AbdomenAnatomy, dz: float) -> AbdomenAnatomy:
    """Move the liver (and the gallbladder under it) by ``dz`` mm along z."""
    shift = np.array([0.0, 0.0, dz])
    parts = tuple(replace(p, centre=np.asarray(p.centre) + shift) for p in anatomy.liver.parts)
    return replace(
        anatomy,
        liver=replace(anatomy.liver, parts=parts),
        liver_anchor=anatomy.liver_anchor + shift,
        gallbladder=replace(anatomy.gallbladder, centre=np.asarray(anatomy.gallbladder.centre) + shift),
    )


def grow_liver_trees(anatomy: AbdomenAnatomy, reference: Canvas, rng: np.random.Generator) -> list:
    """Portal and hepatic vein trees inside the liver of the reference render (world segments)."""
    from scipy import ndimage

    liver = ndimage.binary_erosion(reference.organ == L["liver"], iterations=1)
    inside = MaskLookup(reference.grid, liver)
    s = anatomy.scales["liver"]
    anchor = anatomy.liver_anchor
    segments = []
    portal_end = anatomy.portal_vein.points[-1]
    root = _first_inside(inside, portal_end, anchor)
    if root is not None:
        segments += grow_vessel_tree(rng, root, anchor + np.array([25.0, -5.0, 10.0]) * s - root, 7.0,
                                     inside, min_radius=1.2, max_segments=90)
    top = anchor + np.array([0.0, 0.0, 45.0]) * s
    hepatic_start = np.array([anatomy.ivc.centre_xy[0], anatomy.ivc.centre_xy[1] + 10.0, top[2]])
    root = _first_inside(inside, hepatic_start, anchor)
    if root is not None:
        for direction in ((1.0, 0.5, -0.5), (0.0, 1.0, -0.5), (-1.0, 0.8, -0.2)):
            segments += grow_vessel_tree(rng, root, direction, 5.5, inside, min_radius=1.2, max_segments=40)
    return segments


def _first_inside(inside, start, target, steps: int = 40):
    """The first point on the segment start -> target that lies inside the mask."""
    for t in np.linspace(0.0, 1.0, steps):
        p = start + t * (np.asarray(target) - start)
        if inside(p[None])[0]:
            return p
    return None


def render_abdomen(anatomy: AbdomenAnatomy, grid: Grid, trees=(), reference: bool = False) -> Canvas:
    """Rasterise the anatomy on ``grid`` (noise-free).

    Args:
        anatomy: the case's anatomy.
        grid: output grid (RAS voxel order).
        trees: world-space vessel segments to paint inside the liver.
        reference: skip what cannot change organ volumes (bowel loops, ribs, textures),
            for fast calibration renders.
    """
    hu, tex = anatomy.hu, anatomy.textures
    c = Canvas(grid, background_hu=hu[T.AIR])

    def textured(tissue):
        if reference or tissue not in tex:
            return hu[tissue]
        field: SmoothField = tex[tissue]
        base = np.float32(hu[tissue])
        return lambda X, Y, Z: base + field(X, Y, Z)

    c.paint_layers([
        (anatomy.body, T.SKIN, hu[T.SKIN]),
        (anatomy.subcutaneous, T.SUBCUTANEOUS_FAT, hu[T.SUBCUTANEOUS_FAT]),
        (anatomy.muscle_wall, T.MUSCLE, hu[T.MUSCLE]),
        (anatomy.cavity, T.VISCERAL_FAT, hu[T.VISCERAL_FAT]),
    ])
    for muscle in anatomy.paraspinal:
        c.paint(muscle, T.MUSCLE, hu[T.MUSCLE], within=(T.VISCERAL_FAT, T.MUSCLE, T.SUBCUTANEOUS_FAT))
    for muscle in anatomy.psoas:
        c.paint(muscle, T.MUSCLE, hu[T.MUSCLE], within=(T.VISCERAL_FAT,))
    if not reference:
        for loop in anatomy.bowel:
            _paint_hollow(c, loop, hu, organ=0, within=(T.VISCERAL_FAT,))
    _paint_hollow(c, anatomy.stomach, hu, organ=L["stomach"], within=CAVITY_TISSUES)

    c.paint(anatomy.scaled_spleen(), T.SPLEEN, textured(T.SPLEEN), organ=L["spleen"], within=CAVITY_TISSUES)
    c.paint(anatomy.scaled_liver(), T.LIVER, textured(T.LIVER), organ=L["liver"], within=CAVITY_TISSUES)
    c.paint(anatomy.scaled_gallbladder(), T.GALLBLADDER, hu[T.GALLBLADDER], organ=L["gallbladder"],
            within=CAVITY_TISSUES)
    c.paint(anatomy.scaled_pancreas(), T.PANCREAS, textured(T.PANCREAS), organ=L["pancreas"], within=CAVITY_TISSUES)
    for side, name in ((0, "right_kidney"), (1, "left_kidney")):
        kidney, sinus = anatomy.scaled_kidney(side)
        c.paint(kidney, T.KIDNEY_CORTEX, textured(T.KIDNEY_CORTEX), organ=L[name], within=CAVITY_TISSUES)
        c.paint(kidney, T.KIDNEY_MEDULLA, hu[T.KIDNEY_MEDULLA], organ=L[name], within=(T.KIDNEY_CORTEX,),
                band=(None, 0.72))
        c.paint(sinus, T.RENAL_SINUS_FAT, hu[T.RENAL_SINUS_FAT], organ=L[name],
                within=(T.KIDNEY_CORTEX, T.KIDNEY_MEDULLA))
    c.paint(anatomy.splenic_vein, T.VEIN, hu[T.VEIN], organ=L["portal_splenic_vein"], within=CAVITY_TISSUES)
    c.paint(anatomy.portal_vein, T.VEIN, hu[T.VEIN], organ=L["portal_splenic_vein"], within=CAVITY_TISSUES)
    c.paint(anatomy.ivc, T.VEIN, hu[T.VEIN], organ=L["ivc"], within=CAVITY_TISSUES)
    c.paint(anatomy.aorta, T.ARTERY, hu[T.ARTERY], organ=L["aorta"], within=CAVITY_TISSUES)
    for seg in trees:
        c.paint(seg.as_tube(), T.LIVER_VESSEL, hu[T.LIVER_VESSEL], organ=None, within=(T.LIVER,))

    anatomy.spine.paint(c, hu)
    if not reference:
        _paint_ribs(c, anatomy)
    return c


def _paint_hollow(c: Canvas, hollow: HollowTube, hu, organ: int, within) -> None:
    """Wall, fluid and gas of a hollow organ in one pass over its bounding box."""
    sl = c.grid.slices_for_box(*hollow.tube.bbox())
    if sl is None:
        return
    X, Y, Z = c.grid.coords(sl)
    outer = hollow.tube.field(X, Y, Z) < 1.0
    inner_tube = replace(hollow.tube, radii=np.maximum(np.asarray(hollow.tube.radii) - hollow.wall_mm, 0.5))
    lumen = outer & (inner_tube.field(X, Y, Z) < 1.0)
    gas = lumen & (Y > np.float32(hollow.gas_level_y))
    _, painted = c.paint_mask(sl, outer, T.GUT_WALL, hu[T.GUT_WALL], organ=organ, within=within)
    c.paint_mask(sl, painted & lumen & ~gas, T.GUT_FLUID, hu[T.GUT_FLUID], organ=organ)
    c.paint_mask(sl, painted & gas, T.GAS, hu[T.GAS], organ=organ)


def _paint_ribs(c: Canvas, a: AbdomenAnatomy) -> None:
    paint_ribs(c, a.muscle_wall, a.muscle_mm, a.rib_levels, a.rib_slope, a.hu,
               within=(T.MUSCLE, T.SUBCUTANEOUS_FAT, T.VISCERAL_FAT))
