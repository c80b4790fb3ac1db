"""Spine and ribs, shared by the abdomen and chest phantoms (world mm, RAS+)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .render import Canvas
from .shapes import EllipticCylinder
from .tissues import Tissue as T


class BodyWallLayers:
    """The layers of the trunk wall, derived from an anatomy's body contour and thicknesses.

    Mixed into the abdomen and chest anatomies, which define ``body`` (the skin surface),
    ``skin_mm``, ``fat_mm`` and ``muscle_mm`` (in-plane thicknesses in mm).
    """

    @property
    def subcutaneous(self) -> EllipticCylinder:
        return self.body.shrunk(self.skin_mm, self.skin_mm)

    @property
    def muscle_wall(self) -> EllipticCylinder:
        return self.subcutaneous.shrunk(*self.fat_mm)

    @property
    def cavity(self) -> EllipticCylinder:
        return self.muscle_wall.shrunk(*self.muscle_mm)


@dataclass(frozen=True)
class Spine:
    """A vertebral column along z.

    Attributes:
        x: left-right position of the midline (mm).
        y_body: antero-posterior centre of the vertebral bodies (mm).
        y_canal: antero-posterior centre of the spinal canal (mm).
        period_mm: vertebra height plus disc height (mm).
        phase_mm: z offset of the disc pattern (mm).
        body_semi_axes: (lateral, antero-posterior) semi-axes of a vertebral body (mm).
        disc_mm: disc height (mm).
    """

    x: float
    y_body: float
    y_canal: float
    period_mm: float
    phase_mm: float
    body_semi_axes: tuple[float, float] = (22.0, 17.0)
    disc_mm: float = 8.0

    def _level(self, Z):
        """Height (mm) within the current vertebra, the disc occupying [0, disc_mm)."""
        return np.mod(Z - np.float32(self.phase_mm), np.float32(self.period_mm))

    def _band(self, lo_mm: float, hi_mm: float):
        """Clip function: the part of each vertebra's height from ``lo_mm`` to ``hi_mm`` above its disc."""
        lo, hi = np.float32(self.disc_mm + lo_mm), np.float32(self.disc_mm + hi_mm)
        return lambda X, Y, Z: (self._level(Z) >= lo) & (self._level(Z) < hi)

    def paint(self, c: Canvas, hu) -> None:
        """Vertebral bodies (cortex, marrow), discs, canal and posterior elements."""
        body = EllipticCylinder(centre_xy=(self.x, self.y_body), semi_axes=self.body_semi_axes, exponent=2.2)
        vertebra = self._band(0.0, self.period_mm)
        c.paint(body, T.DISC, hu[T.DISC])
        c.paint(body, T.CORTICAL_BONE, hu[T.CORTICAL_BONE], clip=vertebra)
        c.paint(body.shrunk(2.5, 2.5), T.CANCELLOUS_BONE, hu[T.CANCELLOUS_BONE], clip=vertebra)
        # Pedicles and laminae (a ring around the canal), transverse and spinous processes;
        # each occupies only part of a vertebra's height.
        arch = EllipticCylinder(centre_xy=(self.x, self.y_canal), semi_axes=(15.0, 13.0))
        c.paint(arch, T.CORTICAL_BONE, hu[T.CORTICAL_BONE], clip=self._band(0.0, 18.0))
        for side in (1.0, -1.0):
            transverse = EllipticCylinder(centre_xy=(self.x + side * 26.0, self.y_canal + 4.0), semi_axes=(14.0, 4.5))
            c.paint(transverse, T.CORTICAL_BONE, hu[T.CORTICAL_BONE], clip=self._band(5.0, 14.0))
        spinous = EllipticCylinder(centre_xy=(self.x, self.y_canal - 19.0), semi_axes=(4.0, 10.0))
        c.paint(spinous, T.CORTICAL_BONE, hu[T.CORTICAL_BONE], clip=self._band(4.0, 20.0))
        c.paint(EllipticCylinder(centre_xy=(self.x, self.y_canal), semi_axes=(9.0, 8.0)), T.CSF, hu[T.CSF])


def spine_behind(y_back_mm: float, rng: np.random.Generator) -> Spine:
    """A spine whose spinous tips lie 6 mm in front of ``y_back_mm`` (the inner edge of the posterior fat)."""
    y_spinous_tip = y_back_mm + 6.0
    y_canal = y_spinous_tip + 26.0
    return Spine(
        x=0.0,
        y_body=y_canal + 9.0 + 4.0 + 17.0,
        y_canal=y_canal,
        period_mm=float(rng.uniform(28.0, 34.0)),
        phase_mm=float(rng.uniform(0.0, 34.0)),
    )


def paint_ribs(c: Canvas, wall: EllipticCylinder, wall_mm, levels, slope: float, hu, within) -> None:
    """Ribs: curved bone bars in the body wall that descend towards the front.

    A rib follows the ellipse halfway through the muscle wall; its height is
    ``z_posterior - slope * (distance from the back)``, and it runs from next to the spine to
    an end angle measured from the posterior midline. Only the (x, y) columns within a rib's
    half-width of the ring are evaluated along z, so ribs cost a thin annulus, not a volume.

    Args:
        c: canvas to paint.
        wall: outer boundary of the muscle wall.
        wall_mm: (lateral, antero-posterior) wall thickness (mm).
        levels: (K, 3) rows ``(z_posterior_mm, end_angle_rad, section_scale)``.
        slope: descent (mm) per mm of antero-posterior distance.
        hu: HU table.
        within: tissues a rib may replace.
    """
    ring = wall.shrunk(wall_mm[0] / 2.0, wall_mm[1] / 2.0)
    grid = c.grid
    xs = grid.axis(0).astype(np.float32)[:, None]
    ys = grid.axis(1).astype(np.float32)[None, :]
    zs = grid.axis(2).astype(np.float32)
    rho = ring.field(xs, ys, None)
    dx, dy = xs - np.float32(ring.centre_xy[0]), ys - np.float32(ring.centre_xy[1])
    radius_dir = np.sqrt(dx**2 + dy**2) / np.maximum(rho, 1e-3)
    radial = (rho - 1.0) * radius_dir  # signed in-plane distance to the ring (mm)
    angle = np.arctan2(np.abs(dx) / ring.semi_axes[0], -dy / ring.semi_axes[1])  # 0 at the back
    half_w, half_h = 3.5, 5.5
    col_i, col_j = np.nonzero((np.abs(radial) < half_w * float(np.max(levels[:, 2]))) & (angle > np.deg2rad(22)))
    if len(col_i) == 0:
        return
    r_col = radial[col_i, col_j][:, None]
    a_col = angle[col_i, col_j][:, None]
    back = (ys[0, col_j] - ring.centre_xy[1] + ring.semi_axes[1])[:, None]
    best = np.full((len(col_i), len(zs)), np.inf, dtype=np.float32)
    for z_post, end_angle, scale in levels:
        zc = np.float32(z_post) - np.float32(slope) * back
        f = np.sqrt((r_col / np.float32(half_w * scale)) ** 2 + ((zs[None, :] - zc) / np.float32(half_h * scale)) ** 2)
        f = np.where(a_col <= end_angle, f, np.float32(np.inf))
        np.minimum(best, f, out=best)
    allowed = np.zeros(256, dtype=bool)
    allowed[list(within)] = True
    cortex = (best < 1.0) & allowed[c.tissue[col_i, col_j, :]]
    marrow = cortex & (best < 0.55)
    for mask, tissue in ((cortex, T.CORTICAL_BONE), (marrow, T.CANCELLOUS_BONE)):
        ii, kk = np.nonzero(mask)
        c.tissue[col_i[ii], col_j[ii], kk] = tissue
        c.hu[col_i[ii], col_j[ii], kk] = hu[tissue]
        c.organ[col_i[ii], col_j[ii], kk] = 0
