"""Resolution-independent shapes in world coordinates (mm): smooth irregular blobs, tubes, vessel trees.

Every shape exposes ``bbox()`` (world box that contains it, mm) and ``field(X, Y, Z)``: a
normalised level that is below 1 inside the shape and grows outwards (e.g. 0.5 halfway
between the centre and the surface of an ellipsoid). ``X, Y, Z`` are broadcastable float32
arrays of world coordinates, so a shape is evaluated only on the voxels of its bounding box,
at any spacing, and the same random parameters give the same anatomy on every grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class Wobble:
    """A smooth random perturbation of a unit direction: ``g(u) = sum_k a_k sin(f_k . u + phi_k)``.

    Used to make ellipsoids irregular: the surface radius along direction ``u`` is scaled by
    ``1 + g(u)``. Frequencies are in radians per unit of direction (about 1-3 gives a few
    lobes over the sphere).
    """

    freqs: np.ndarray  # (K, 3)
    amps: np.ndarray  # (K,)
    phases: np.ndarray  # (K,)

    @property
    def max_amplitude(self) -> float:
        return float(np.sum(np.abs(self.amps)))

    def __call__(self, u0, u1, u2):
        g = 0.0
        for (f0, f1, f2), a, p in zip(self.freqs, self.amps, self.phases):
            g = g + np.float32(a) * np.sin(np.float32(f0) * u0 + np.float32(f1) * u1 + np.float32(f2) * u2 + np.float32(p))
        return g


def random_wobble(rng: np.random.Generator, amplitude: float, n_terms: int = 6, freq=(1.0, 3.0)) -> Wobble:
    """A random :class:`Wobble` whose terms sum to at most ``amplitude`` (fraction of the radius)."""
    directions = rng.normal(size=(n_terms, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    freqs = directions * rng.uniform(*freq, size=(n_terms, 1))
    weights = rng.uniform(0.3, 1.0, size=n_terms)
    amps = amplitude * weights / weights.sum() * rng.choice([-1.0, 1.0], size=n_terms)
    return Wobble(freqs=freqs, amps=amps, phases=rng.uniform(0, 2 * np.pi, size=n_terms))


@dataclass(frozen=True)
class Ellipsoid:
    """A (possibly rotated and wobbled) ellipsoid.

    Attributes:
        centre: world position (mm).
        radii: semi-axes (mm) along the columns of ``rotation``.
        rotation: 3x3 matrix whose columns are the ellipsoid's axes in world coordinates.
        wobble: optional boundary perturbation (fraction of the radius per direction).
    """

    centre: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    wobble: Wobble | None = None

    def bbox(self):
        half = np.sqrt(((self.rotation * np.asarray(self.radii)[None, :]) ** 2).sum(axis=1))
        half = half * (1.0 + (self.wobble.max_amplitude if self.wobble else 0.0))
        c = np.asarray(self.centre, dtype=float)
        return c - half, c + half

    def local(self, X, Y, Z):
        """Coordinates in the ellipsoid frame, in units of the radii (1 on the unwobbled surface)."""
        d = (X - np.float32(self.centre[0]), Y - np.float32(self.centre[1]), Z - np.float32(self.centre[2]))
        out = []
        for k in range(3):
            col = np.asarray(self.rotation)[:, k] / float(self.radii[k])
            q = None
            # Terms are added from the smallest broadcast shape up, and an axis-aligned axis
            # keeps the cheap broadcast shape of its coordinate.
            for j in np.flatnonzero(np.abs(col) > 1e-12):
                term = np.float32(col[j]) * d[j]
                q = term if q is None else q + term
            out.append(q if q is not None else np.zeros_like(d[0]))
        return out

    def field(self, X, Y, Z):
        return restricted_to_bbox(self._field, self.bbox(), X, Y, Z)

    def _field(self, X, Y, Z):
        q0, q1, q2 = self.local(X, Y, Z)
        n = q0 * q0
        n = n + q1 * q1
        n = n + q2 * q2
        np.sqrt(n, out=n)
        if self.wobble is None:
            return n
        # The wobble only moves the surface by at most its amplitude A, so it is evaluated
        # on the shell (1 - A, 1 + A) where it can change inside/outside; deeper voxels keep
        # the plain ellipsoid level (their exact value is only used for inner bands).
        amp = min(self.wobble.max_amplitude, 0.6)
        shell = (n > np.float32(1.0 - amp - 1e-3)) & (n < np.float32(1.0 + amp + 1e-3))
        ns = n[shell]
        inv = 1.0 / np.maximum(ns, np.float32(1e-6))
        qs = [np.broadcast_to(q, n.shape)[shell] for q in (q0, q1, q2)]
        g = self.wobble(qs[0] * inv, qs[1] * inv, qs[2] * inv)
        n[shell] = ns / (1.0 + np.clip(g, -0.6, 0.6))
        return n

    def scaled(self, s: float, about=None) -> "Ellipsoid":
        about = self.centre if about is None else np.asarray(about, dtype=float)
        return replace(self, centre=about + s * (np.asarray(self.centre) - about), radii=np.asarray(self.radii) * s)


@dataclass(frozen=True)
class Union:
    """Smooth union of shapes: the fields are combined with a smooth minimum of width ``smooth``."""

    parts: tuple
    smooth: float = 0.15

    def bbox(self):
        boxes = [p.bbox() for p in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def field(self, X, Y, Z):
        out = None
        for p in self.parts:
            f = p.field(X, Y, Z)
            out = f if out is None else smooth_min(out, f, self.smooth)
        return out

    def scaled(self, s: float, about) -> "Union":
        return replace(self, parts=tuple(p.scaled(s, about) for p in self.parts))


def _is_separable(X, Y, Z) -> bool:
    """True for the (h, 1, 1), (1, w, 1), (1, 1, d) ascending coordinate vectors of Grid.coords."""
    return (
        np.ndim(X) == 3 and np.ndim(Y) == 3 and np.ndim(Z) == 3
        and np.shape(X)[1:] == (1, 1) and np.shape(Y)[::2] == (1, 1) and np.shape(Z)[:2] == (1, 1)
    )


def smooth_min(a, b, k: float):
    """Polynomial smooth minimum: equals ``min(a, b)`` where they differ by more than ``k``.

    Safe with ``inf`` (outside a part's bounding box): the correction vanishes there.
    """
    out = np.minimum(a, b)
    if k <= 0:
        return out
    with np.errstate(invalid="ignore"):  # inf - inf where both parts are absent: no correction
        h = np.fmax(np.float32(k) - np.abs(a - b), np.float32(0.0)) * np.float32(1.0 / k)
    return out - h * h * np.float32(k / 4.0)


def restricted_to_bbox(field_fn, bbox, X, Y, Z):
    """Evaluate ``field_fn`` only inside ``bbox`` (world mm) when X, Y, Z are grid vectors.

    For the separable coordinates of :meth:`phantom.geometry.Grid.coords` the field is
    computed on the sub-box only and is ``inf`` (outside) elsewhere; other inputs (point
    lists, full arrays) are evaluated as they are.
    """
    if not _is_separable(X, Y, Z):
        return field_fn(X, Y, Z)
    lo, hi = bbox
    sub = tuple(
        slice(int(np.searchsorted(c.ravel(), lo[k])), int(np.searchsorted(c.ravel(), hi[k], side="right")))
        for k, c in enumerate((X, Y, Z))
    )
    shape = (X.shape[0], Y.shape[1], Z.shape[2])
    if sub == tuple(slice(0, n) for n in shape):
        return np.broadcast_to(field_fn(X, Y, Z), shape)
    out = np.full(shape, np.inf, dtype=np.float32)
    if all(s.start < s.stop for s in sub):
        out[sub] = field_fn(X[sub[0], :, :], Y[:, sub[1], :], Z[:, :, sub[2]])
    return out


@dataclass(frozen=True)
class Tube:
    """A tube along a polyline with linearly varying radius (capsules joined end to end).

    Attributes:
        points: (N, 3) world positions (mm) of the centre line.
        radii: (N,) radius (mm) at each point.
        lobulation: optional (K, 3) rows ``(amplitude, wavelength_mm, phase)`` modulating the
            radius along the arc length (a lobulated contour, e.g. of the pancreas).
    """

    points: np.ndarray
    radii: np.ndarray
    lobulation: np.ndarray | None = None

    def bbox(self):
        pts = np.asarray(self.points, dtype=float)
        r = float(np.max(self.radii)) * (1.0 + (np.abs(self.lobulation[:, 0]).sum() if self.lobulation is not None else 0.0))
        return pts.min(axis=0) - r, pts.max(axis=0) + r

    def field(self, X, Y, Z):
        pts = np.asarray(self.points, dtype=np.float64)
        arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        separable = _is_separable(X, Y, Z)
        shape = np.broadcast_shapes(np.shape(X), np.shape(Y), np.shape(Z))
        out = np.full(shape, np.inf, dtype=np.float32)
        r_max = float(np.max(self.radii)) * (1.0 + (np.abs(self.lobulation[:, 0]).sum() if self.lobulation is not None else 0.0))
        for i in range(len(pts) - 1):
            a, b = pts[i], pts[i + 1]
            if separable:
                # Each segment only needs the voxels of its own bounding box (field < 1 is
                # what matters; farther voxels keep the value of the nearest segment or inf).
                lo, hi = np.minimum(a, b) - 1.5 * r_max, np.maximum(a, b) + 1.5 * r_max
                sub = tuple(
                    slice(int(np.searchsorted(c.ravel(), lo[k])), int(np.searchsorted(c.ravel(), hi[k], side="right")))
                    for k, c in enumerate((X, Y, Z))
                )
                if any(s.start >= s.stop for s in sub):
                    continue
                x, y, z = X[sub[0], :, :], Y[:, sub[1], :], Z[:, :, sub[2]]
                target = out[sub]
            else:
                x, y, z, target = X, Y, Z, out
            f = self._segment_field(i, a, b, arc, x, y, z)
            np.minimum(target, f, out=target)
        return out

    def _segment_field(self, i, a, b, arc, X, Y, Z):
        ab = b - a
        L2 = float(ab @ ab) or 1e-12
        dx, dy, dz = X - np.float32(a[0]), Y - np.float32(a[1]), Z - np.float32(a[2])
        t = (dx * np.float32(ab[0]) + dy * np.float32(ab[1]) + dz * np.float32(ab[2])) * np.float32(1.0 / L2)
        t = np.clip(t, 0.0, 1.0)
        ex, ey, ez = dx - t * np.float32(ab[0]), dy - t * np.float32(ab[1]), dz - t * np.float32(ab[2])
        dist = np.sqrt(ex * ex + ey * ey + ez * ez)
        r = np.float32(self.radii[i]) + t * np.float32(self.radii[i + 1] - self.radii[i])
        if self.lobulation is not None:
            s = np.float32(arc[i]) + t * np.float32(arc[i + 1] - arc[i])
            mod = 1.0
            for amp, wavelength, phase in self.lobulation:
                mod = mod + np.float32(amp) * np.sin(s * np.float32(2 * np.pi / wavelength) + np.float32(phase))
            r = r * mod
        return dist / r

    def scaled(self, s: float, about=None) -> "Tube":
        """Scale the radii only (the centre line keeps its length and position)."""
        return replace(self, radii=np.asarray(self.radii) * s)


@dataclass(frozen=True)
class EllipticCylinder:
    """A cylinder along z with a super-elliptic cross-section (``exponent`` 2: an ellipse).

    The field depends on x and y only, so it is evaluated on one axial plane and broadcast
    along z (shape (h, w, 1)): body layers cost one plane, not one volume. ``z_range`` (mm)
    limits the extent; None means the whole field of view.
    """

    centre_xy: tuple[float, float]
    semi_axes: tuple[float, float]
    exponent: float = 2.0
    z_range: tuple[float, float] | None = None

    def bbox(self):
        z0, z1 = self.z_range if self.z_range is not None else (-1e4, 1e4)
        half = np.asarray(self.semi_axes, dtype=float)
        return np.r_[np.asarray(self.centre_xy) - half, z0], np.r_[np.asarray(self.centre_xy) + half, z1]

    def field(self, X, Y, Z):
        p = np.float32(self.exponent)
        u = np.abs((X - np.float32(self.centre_xy[0])) * np.float32(1.0 / self.semi_axes[0]))
        v = np.abs((Y - np.float32(self.centre_xy[1])) * np.float32(1.0 / self.semi_axes[1]))
        return (u**p + v**p) ** (1.0 / p)

    def shrunk(self, da: float, db: float) -> "EllipticCylinder":
        """The same section with semi-axes reduced by ``da``/``db`` mm (an inner layer)."""
        return replace(self, semi_axes=(self.semi_axes[0] - da, self.semi_axes[1] - db))


@dataclass(frozen=True)
class SmoothField:
    """A smooth random scalar field (sum of plane waves), e.g. parenchymal texture in HU.

    ``value(X, Y, Z) = sum_k a_k cos(2 pi f_k . x + phi_k)`` with ``f_k`` in cycles per mm.
    """

    freqs: np.ndarray  # (K, 3)
    amps: np.ndarray  # (K,)
    phases: np.ndarray  # (K,)

    def __call__(self, X, Y, Z):
        v = 0.0
        for (f0, f1, f2), a, p in zip(self.freqs, self.amps, self.phases):
            arg = np.float32(2 * np.pi * f0) * X + np.float32(2 * np.pi * f1) * Y + np.float32(2 * np.pi * f2) * Z
            v = v + np.float32(a) * np.cos(arg + np.float32(p))
        return v


def random_smooth_field(rng: np.random.Generator, std: float, wavelength_mm=(15.0, 60.0), n_terms: int = 5) -> SmoothField:
    """A :class:`SmoothField` with standard deviation about ``std`` and the given wavelengths (mm)."""
    d = rng.normal(size=(n_terms, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    freqs = d / rng.uniform(*wavelength_mm, size=(n_terms, 1))
    # A cosine of random phase has variance a^2 / 2; the terms are independent.
    amps = np.full(n_terms, std * np.sqrt(2.0 / n_terms))
    return SmoothField(freqs=freqs, amps=amps, phases=rng.uniform(0, 2 * np.pi, size=n_terms))


@dataclass(frozen=True)
class Segment:
    """One straight vessel segment: centre line from ``a`` to ``b`` (mm), radius ``ra`` to ``rb`` (mm)."""

    a: np.ndarray
    b: np.ndarray
    ra: float
    rb: float

    def as_tube(self) -> Tube:
        return Tube(points=np.stack([self.a, self.b]), radii=np.array([self.ra, self.rb]))


def grow_vessel_tree(
    rng: np.random.Generator,
    root,
    direction,
    radius: float,
    inside,
    min_radius: float = 1.0,
    max_segments: int = 120,
    branch_angle_deg=(20.0, 45.0),
    length_per_radius: float = 5.0,
) -> list[Segment]:
    """Grow a random bifurcating vessel tree inside a host organ.

    Each segment is followed by a bifurcation whose children have radius ``r / 2**(1/3)``
    (Murray's law for a symmetric split) and leave at a random angle around the parent's
    direction. A child that would leave the host is retried in other directions and dropped
    when it keeps leaving, so the tree fills the organ without crossing its surface.

    Args:
        rng: random generator (the tree is a pure function of its state and the host).
        root: world position (mm) of the trunk's start, inside the host.
        direction: initial direction of the trunk (any length).
        radius: trunk radius (mm).
        inside: function of (N, 3) world points returning a bool array (N,): inside the host.
        min_radius: branches thinner than this (mm) are not grown.
        max_segments: cap on the number of segments.
        branch_angle_deg: range of the angle between a child and its parent.
        length_per_radius: segment length as a multiple of its radius (clipped to 6-30 mm).

    Returns:
        The segments, trunk first (breadth-first order).
    """
    segments: list[Segment] = []
    d0 = np.asarray(direction, dtype=float)
    queue = [(np.asarray(root, dtype=float), d0 / np.linalg.norm(d0), float(radius))]
    while queue and len(segments) < max_segments:
        start, d, r = queue.pop(0)
        length = float(np.clip(length_per_radius * r, 6.0, 30.0)) * rng.uniform(0.8, 1.2)
        end = None
        for attempt in range(6):
            trial_d = d if attempt == 0 else _deviate(rng, d, rng.uniform(10.0, 35.0) * (1 + attempt / 2))
            trial = start + trial_d * length
            probes = start + np.outer(np.linspace(0.25, 1.0, 4), trial - start)
            if np.all(inside(probes)):
                end, d = trial, trial_d
                break
        if end is None:
            continue
        r_child = r / 2 ** (1 / 3)
        segments.append(Segment(a=start, b=end, ra=r, rb=max(r_child, 0.8 * r)))
        if r_child >= min_radius:
            for sign in (1.0, -1.0):
                angle = sign * rng.uniform(*branch_angle_deg)
                queue.append((end, _deviate(rng, d, abs(angle)), r_child))
    return segments


def _deviate(rng: np.random.Generator, d: np.ndarray, angle_deg: float) -> np.ndarray:
    """A unit vector at ``angle_deg`` from unit vector ``d``, in a random plane containing ``d``."""
    helper = rng.normal(size=3)
    perp = helper - (helper @ d) * d
    perp /= np.linalg.norm(perp) or 1.0
    a = np.deg2rad(angle_deg)
    out = np.cos(a) * d + np.sin(a) * perp
    return out / np.linalg.norm(out)
