"""Tumor texture: the original's noise model, computed only where a tumor is.

The original (Hu et al. 2023) builds a texture in [0, 1] over the whole volume:

1. ``g = G_a * U``: uniform noise smoothed by a Gaussian of sigma_a, rescaled by its global
   minimum and maximum to ``a = base + scale * (g - min g) / (max g - min g)``;
2. ``B ~ Bernoulli(a)`` voxel by voxel (``a > U'``), smoothed: ``b2 = G_b * B``;
3. ``T = clip(beta * b2, 0, 1)`` where ``beta`` makes the mean of ``b2`` over its values
   above 0.12 equal ``u0``.

It pre-computed ten such textures of 420x300x320 voxels (3 GiB, 80 s per process). Here
the same random field is drawn directly on the small box of one tumor cluster, in
physical coordinates, with the same one-point and two-point statistics:

* ``G_b * a`` is the smoothed field seen through a Gaussian of
  ``sigma_c = sqrt(sigma_a**2 + sigma_b**2)``; its mean and standard deviation follow
  from the discrete kernels (:func:`field_moments`), and the global minimum and maximum
  of the original's 420x300x320 field, which set its contrast, are the calibrated
  :data:`EXTREMES_Z` (``python benchmarks/bench_synthesis.py --calibrate-texture``);
* ``G_b * (B - a)`` is smoothed Bernoulli noise, a sum of thousands of independent terms:
  a Gaussian field of variance ``a (1 - a) * sum(k_b ** 2)`` and the correlation of
  ``G_b``;
* ``beta`` is the same conditional mean, computed from the field's law instead of from
  3 GiB of samples.

Stationary Gaussian fields with the correlation of Gaussian-smoothed white noise,
``exp(-r**2 / (4 sigma**2))``, are drawn as a sum of Gaussian bumps on a lattice with a
random phase (:func:`gaussian_field`): separable, so three small matrix products, and
exact at every point of the box without the 4-sigma margins of noise a literal
convolution would need.

Two deliberate differences: the original's bank is brighter-contrasted near its own faces
(the mirrored border), and a random crop of it sometimes includes them, while the field
here is the bank's interior everywhere; and the original drew scale, base and u0 once per
bank texture at start-up (10 values per process, always the same since it seeds 0), while
here they are drawn per sample from the same uniform ranges.

:func:`reference_texture` is the literal algorithm, used by the tests and the calibration.
All sigmas are in mm (the original's voxels at 1 mm); arrays are float32 (x, y, z).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from tumor_synthesis.separable import TRUNCATE, banded_matmul


#: Lattice step of :func:`gaussian_field`, in sigmas: a Gaussian lattice sum has a relative
#: variance ripple of about 2 exp(-(pi / step)**2), 1e-4 here (and the random phase makes
#: the field exactly stationary in law).
LATTICE_STEP = 1.0
#: Lattice margin around the box, in sigmas: bumps further away add < 1e-5 of the variance.
LATTICE_MARGIN = 3.0
#: Distance (sigmas) beyond which a bump is exactly zero: exp(-18) is below float32 resolution.
BUMP_CUTOFF = 6.0

#: Mean standardized minimum and maximum, ``(min g - 0.5) / std g`` and
#: ``(max g - 0.5) / std g``, of the original's ``g = G_a * U`` over its 420x300x320
#: texture volume, per sigma_a (mm). scipy's "reflect" border mirrors the noise near the
#: faces, which widens the extremes beyond those of the interior. Measured with
#: ``python benchmarks/bench_synthesis.py --calibrate-texture`` (20 volumes per sigma_a,
#: both tails pooled; standard errors 0.09 to 0.15).
EXTREMES_Z: dict[float, tuple[float, float]] = {
    3.0: (-6.73, 6.73),
    6.0: (-6.47, 6.47),
    9.0: (-6.35, 6.35),
    12.0: (-6.07, 6.07),
    15.0: (-6.01, 6.01),
}


@dataclass(frozen=True)
class TextureConfig:
    """Laws of the texture parameters (the original's values by default).

    Attributes:
        sigma_a_mm: choices of the first smoothing (the original's bank: 3, 6, 9, 12, 15).
        sigma_b_mm: choices of the second smoothing (the bank: 4, 7).
        scale: uniform range of the contrast of the Bernoulli probability field.
        base: uniform range of its offset.
        u0: uniform range of the target mean of the final texture above ``threshold``.
        threshold: value of ``b2`` above which the mean is normalized.
    """

    sigma_a_mm: tuple[float, ...] = (3.0, 6.0, 9.0, 12.0, 15.0)
    sigma_b_mm: tuple[float, ...] = (4.0, 7.0)
    scale: tuple[float, float] = (0.19, 0.21)
    base: tuple[float, float] = (0.04, 0.06)
    u0: tuple[float, float] = (0.5, 0.55)
    threshold: float = 0.12


@dataclass(frozen=True)
class TextureParams:
    """The parameters of one texture (one per sample, shared by all its tumors)."""

    sigma_a_mm: float
    sigma_b_mm: float
    scale: float
    base: float
    u0: float
    threshold: float = 0.12


def sample_texture_params(rng: np.random.Generator, config: TextureConfig = TextureConfig()) -> TextureParams:
    """Draw one texture's parameters; the (sigma_a, sigma_b) pair is uniform over the bank."""
    return TextureParams(
        sigma_a_mm=float(rng.choice(config.sigma_a_mm)),
        sigma_b_mm=float(rng.choice(config.sigma_b_mm)),
        scale=float(rng.uniform(*config.scale)),
        base=float(rng.uniform(*config.base)),
        u0=float(rng.uniform(*config.u0)),
        threshold=config.threshold,
    )


@lru_cache(maxsize=64)
def gaussian_kernel1d(sigma: float) -> np.ndarray:
    """scipy.ndimage's normalized 1-D Gaussian kernel (radius ``int(4 sigma + 0.5)``)."""
    radius = int(TRUNCATE * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def kernel_l2_3d(kernel1d: np.ndarray) -> float:
    """L2 norm of the separable 3-D kernel built from a 1-D kernel."""
    return float(np.sum(kernel1d**2) ** 1.5)


@dataclass(frozen=True)
class FieldMoments:
    """Constants of the original's fields for one (sigma_a, sigma_b) pair at 1 mm.

    Attributes:
        smooth_ratio: std of ``G_b * z`` where ``z`` is the standardized ``G_a * U``.
        noise_l2: L2 norm of the 3-D kernel ``G_b`` (std of ``G_b`` * unit white noise).
        z_min: standardized global minimum of ``G_a * U`` (:data:`EXTREMES_Z`).
        z_max: standardized global maximum.
    """

    smooth_ratio: float
    noise_l2: float
    z_min: float
    z_max: float


@lru_cache(maxsize=64)
def field_moments(sigma_a: float, sigma_b: float) -> FieldMoments:
    """Compute :class:`FieldMoments` from the discrete kernels and the calibration table."""
    ka, kb = gaussian_kernel1d(sigma_a), gaussian_kernel1d(sigma_b)
    smooth_ratio = kernel_l2_3d(np.convolve(ka, kb)) / kernel_l2_3d(ka)
    z_min, z_max = calibrated_extremes_z(sigma_a)
    return FieldMoments(smooth_ratio, kernel_l2_3d(kb), z_min, z_max)


def standardized_std(sigma_a: float) -> float:
    """Standard deviation of ``G_a * U`` (U uniform on [0, 1)) away from the borders."""
    return kernel_l2_3d(gaussian_kernel1d(sigma_a)) / math.sqrt(12.0)


def calibrated_extremes_z(sigma_a: float) -> tuple[float, float]:
    """Calibrated standardized extremes of ``G_a * U``, interpolated between table rows."""
    sigmas = np.array(sorted(EXTREMES_Z))
    lows = np.array([EXTREMES_Z[s][0] for s in sigmas])
    highs = np.array([EXTREMES_Z[s][1] for s in sigmas])
    return float(np.interp(sigma_a, sigmas, lows)), float(np.interp(sigma_a, sigmas, highs))


def _normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _normal_sf(x: float) -> float:
    return 0.5 * math.erfc(x / math.sqrt(2.0))


@dataclass(frozen=True)
class TextureLaw:
    """Affine maps of one texture: ``b2 = mean_a + std_a * Zc + std_noise(A) * Zb``.

    Attributes:
        a_offset: ``A = a_offset + a_gain * Zc`` (mean field of ``b2``).
        a_gain: gain of the unit field ``Zc`` (correlation of ``G_c``).
        noise_l2: std of the Bernoulli noise term per unit ``sqrt(A (1 - A))``.
        beta: final gain; the texture is ``clip(beta * b2, 0, 1)``.
    """

    a_offset: float
    a_gain: float
    noise_l2: float
    beta: float


def texture_law(params: TextureParams, extremes_z: tuple[float, float] | None = None) -> TextureLaw:
    """Derive the affine maps and ``beta`` of a texture from its parameters.

    Args:
        params: texture parameters.
        extremes_z: standardized (min, max) of the original's ``G_a * U`` field, which set
            its contrast; default: calibrated for the original's 420x300x320 bank.
    """
    m = field_moments(params.sigma_a_mm, params.sigma_b_mm)
    z_min, z_max = (m.z_min, m.z_max) if extremes_z is None else (float(extremes_z[0]), float(extremes_z[1]))
    z_range = z_max - z_min
    a_offset = params.base - params.scale * z_min / z_range
    a_gain = params.scale * m.smooth_ratio / z_range
    # b2 is very nearly normal (a smooth Gaussian field plus the sum of thousands of
    # Bernoulli terms); beta divides u0 by E[b2 | b2 > threshold] of that normal law.
    noise_var = m.noise_l2**2 * (a_offset * (1.0 - a_offset) - a_gain**2)
    std = math.sqrt(a_gain**2 + max(noise_var, 0.0))
    alpha = (params.threshold - a_offset) / std
    tail_mean = a_offset + std * _normal_pdf(alpha) / max(_normal_sf(alpha), 1e-300)
    return TextureLaw(a_offset, a_gain, m.noise_l2, params.u0 / tail_mean)


def _lattice_bumps(n: int, spacing: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """(n, m) float32 matrix of Gaussian bumps on a random-phase lattice, one axis."""
    step = LATTICE_STEP * sigma
    margin = LATTICE_MARGIN * sigma
    positions = np.arange(n, dtype=np.float64) * spacing
    count = int(math.ceil(((n - 1) * spacing + 2.0 * margin) / step)) + 1
    lattice = -margin + (np.arange(count) + rng.random()) * step
    distance = np.abs(positions[:, None] - lattice[None, :]) / sigma
    bumps = np.exp(-0.5 * distance**2)
    # Far tails (below float32 resolution) become exact zeros: as float32 they would be
    # denormal numbers, which slow the matrix products down more than tenfold.
    bumps[distance > BUMP_CUTOFF] = 0.0
    # Each axis contributes sqrt(sqrt(pi) sigma / step) to the std of the lattice sum.
    bumps /= math.sqrt(math.sqrt(math.pi) * sigma / step)
    return bumps.astype(np.float32)


def gaussian_field(shape, spacing, sigma_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance stationary Gaussian field with the correlation of ``G_sigma`` * noise.

    The correlation is ``exp(-r**2 / (4 sigma**2))`` with ``r`` in mm, like white noise on a
    1 mm grid smoothed by a Gaussian of ``sigma_mm``, standardized.

    Args:
        shape: (h, w, d) voxels.
        spacing: voxel size (sx, sy, sz) in mm.
        sigma_mm: smoothing sigma in mm.
        rng: source of the lattice weights and phases.

    Returns:
        (h, w, d) float32 array.
    """
    import torch  # here: the organ profiles import this module, and the scorer must stay free of torch

    bx, by, bz = (_lattice_bumps(n, s, sigma_mm, rng) for n, s in zip(shape, spacing))
    lx, ly, lz = bx.shape[1], by.shape[1], bz.shape[1]
    h, w, d = (int(n) for n in shape)
    weights = torch.from_numpy(rng.standard_normal((lx, ly, lz), dtype=np.float32))
    # One matrix product per axis. They run in torch, whose thread count the pipeline
    # controls (one per DataLoader worker), where numpy's BLAS would start its own
    # threads in every worker and oversubscribe the cores.
    with torch.inference_mode():
        field = (weights.reshape(lx * ly, lz) @ torch.from_numpy(bz.T)).reshape(lx, ly, d)
        field = field.permute(1, 0, 2).reshape(ly, lx * d)
        field = banded_matmul(by, field).reshape(w, lx, d).permute(1, 0, 2).reshape(lx, w * d)
        field = banded_matmul(bx, field).reshape(h, w, d)
    return field.numpy()


def texture_field(
    shape, spacing, params: TextureParams, rng: np.random.Generator, extremes_z: tuple[float, float] | None = None
) -> np.ndarray:
    """The original's texture over a box, drawn directly (see the module docstring).

    Args:
        shape: (h, w, d) voxels of the box.
        spacing: voxel size (sx, sy, sz) in mm.
        params: the sample's texture parameters.
        rng: source of randomness.
        extremes_z: see :func:`texture_law`.

    Returns:
        (h, w, d) float32 texture in [0, 1].
    """
    return texture_values(shape, spacing, params, rng, None, extremes_z)


def texture_values(shape, spacing, params: TextureParams, rng: np.random.Generator, where: np.ndarray | None,
                   extremes_z: tuple[float, float] | None = None) -> np.ndarray:
    """:func:`texture_field` at the voxels ``where`` only: the same values, the same draws from ``rng``.

    The two Gaussian fields are drawn over the whole box (three small matrix products
    each); the per-voxel arithmetic that maps them to the texture runs on the voxels asked
    for: a cluster box of scattered tumors needs the texture on a fraction of its voxels.

    Args:
        shape: (h, w, d) voxels of the box.
        spacing: voxel size (sx, sy, sz) in mm.
        params: the sample's texture parameters.
        rng: source of randomness.
        where: flat (C-order) indices into the box, or None for the whole box.
        extremes_z: see :func:`texture_law`.

    Returns:
        float32 texture in [0, 1]: (h, w, d) when ``where`` is None, else one value per index.
    """
    law = texture_law(params, extremes_z)
    sigma_c = math.hypot(params.sigma_a_mm, params.sigma_b_mm)
    mean_field = gaussian_field(shape, spacing, sigma_c, rng)
    noise = gaussian_field(shape, spacing, params.sigma_b_mm, rng)
    if where is not None:
        mean_field, noise = mean_field.reshape(-1)[where], noise.reshape(-1)[where]
    # texture = beta * (A + noise_l2 * sqrt(A (1 - A)) * Zb), A = a_offset + a_gain * Zc,
    # computed in place: the boxes of a "mix" sample hold millions of voxels.
    mean_field *= np.float32(law.a_gain)
    mean_field += np.float32(law.a_offset)
    spread = np.subtract(np.float32(1.0), mean_field)
    spread *= mean_field
    np.maximum(spread, 0.0, out=spread)
    np.sqrt(spread, out=spread)
    spread *= np.float32(law.noise_l2 * law.beta)
    texture = noise
    texture *= spread
    mean_field *= np.float32(law.beta)
    texture += mean_field
    np.maximum(texture, 0.0, out=texture)
    return np.minimum(texture, 1.0, out=texture)


@dataclass(frozen=True)
class ReferenceTexture:
    """Output of :func:`reference_texture`.

    Attributes:
        texture: (h, w, d) float32 texture in [0, 1].
        z_min: standardized minimum of its ``G_a * U`` field.
        z_max: standardized maximum.
        beta: its normalization gain.
    """

    texture: np.ndarray
    z_min: float
    z_max: float
    beta: float


def reference_texture(shape, params: TextureParams, rng: np.random.Generator) -> ReferenceTexture:
    """The original's texture algorithm, literally, over a whole 1 mm volume (float32).

    Used to validate :func:`texture_field` and to calibrate :data:`EXTREMES_Z`; far too
    slow and large for training (the original ran it on 420x300x320 voxels).
    """
    g = ndimage.gaussian_filter(rng.random(shape, dtype=np.float32), params.sigma_a_mm)
    g_min, g_max = float(g.min()), float(g.max())
    std = standardized_std(params.sigma_a_mm)
    a = (g - g_min) * np.float32(params.scale / (g_max - g_min)) + np.float32(params.base)
    del g
    b = (a > rng.random(shape, dtype=np.float32)).astype(np.float32)
    del a
    b2 = ndimage.gaussian_filter(b, params.sigma_b_mm)
    del b
    above = b2 > params.threshold
    beta = params.u0 / float(b2[above].mean(dtype=np.float64))
    b2 *= np.float32(beta)
    texture = np.clip(b2, 0.0, 1.0, out=b2)
    return ReferenceTexture(texture, (g_min - 0.5) / std, (g_max - 0.5) / std, beta)
