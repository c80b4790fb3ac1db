"""Texture: the per-box Gaussian-field model against the original's literal algorithm."""

import math

import numpy as np
import pytest

from tumor_synthesis.separable import DENSE_MAX
from tumor_synthesis.texture import (
    EXTREMES_Z,
    TextureConfig,
    TextureParams,
    gaussian_field,
    gaussian_kernel1d,
    reference_texture,
    sample_texture_params,
    texture_field,
    texture_law,
    _lattice_bumps,
)


def lag_correlation(field, lag, axis):
    a = np.take(field, np.arange(field.shape[axis] - lag), axis=axis).ravel()
    b = np.take(field, np.arange(lag, field.shape[axis]), axis=axis).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def test_kernel_is_scipys():
    from scipy import ndimage

    impulse = np.zeros(41)
    impulse[20] = 1.0
    kernel = gaussian_kernel1d(3.0)
    np.testing.assert_allclose(ndimage.gaussian_filter1d(impulse, 3.0)[20 - 12 : 20 + 13], kernel[::-1], atol=1e-12)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 2.0, 1.0)])
def test_gaussian_field_has_unit_variance_and_the_smoothed_noise_correlation(spacing):
    rng = np.random.default_rng(0)
    sigma = 4.0
    fields = np.stack([gaussian_field((40, 40, 40), spacing, sigma, rng) for _ in range(8)])
    assert fields.dtype == np.float32
    assert abs(fields.mean()) < 0.1
    assert fields.std() == pytest.approx(1.0, abs=0.1)
    # Stationary: the box's faces are as variable as its middle (no border effect).
    assert fields[:, 0].std() == pytest.approx(fields[:, 20].std(), rel=0.15)
    assert fields[:, :, :, -1].std() == pytest.approx(fields[:, :, :, 20].std(), rel=0.15)
    for axis in (1, 3):
        for lag_vox in (1, 2, 4):
            r_mm = lag_vox * spacing[axis - 1]
            expected = math.exp(-(r_mm**2) / (4 * sigma**2))
            assert lag_correlation(fields, lag_vox, axis) == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize("shape", [(300, 12, 9), (12, 300, 9), (9, 12, 300)])
def test_gaussian_field_is_the_lattice_sum_along_long_axes(shape):
    """One product per axis with the lattice's bumps (banded along a long x or y axis): the sum written out."""
    spacing, sigma = (1.0, 1.0, 1.0), 3.0
    field = gaussian_field(shape, spacing, sigma, np.random.default_rng(5))
    rng = np.random.default_rng(5)  # the same draws, in the same order
    bumps = [_lattice_bumps(n, s, sigma, rng).astype(np.float64) for n, s in zip(shape, spacing)]
    assert max(b.shape[1] for b in bumps) > DENSE_MAX  # a long lattice: banded along x and y, dense along z
    weights = rng.standard_normal(tuple(b.shape[1] for b in bumps), dtype=np.float32).astype(np.float64)
    expected = np.einsum("ijk,xi,yj,zk->xyz", weights, *bumps, optimize=True)
    np.testing.assert_allclose(field, expected, atol=2e-5, rtol=0)


def test_texture_values_are_in_the_unit_interval():
    rng = np.random.default_rng(1)
    for _ in range(5):
        params = sample_texture_params(rng)
        tex = texture_field((30, 25, 20), (1.0, 1.0, 2.0), params, rng)
        assert tex.shape == (30, 25, 20) and tex.dtype == np.float32
        assert tex.min() >= 0.0 and tex.max() <= 1.0
        assert 0.3 < tex.mean() < 0.7


def test_sampled_parameters_follow_the_original_bank():
    rng = np.random.default_rng(2)
    drawn = [sample_texture_params(rng) for _ in range(400)]
    assert {p.sigma_a_mm for p in drawn} == {3.0, 6.0, 9.0, 12.0, 15.0}
    assert {p.sigma_b_mm for p in drawn} == {4.0, 7.0}
    for name, (lo, hi) in (("scale", (0.19, 0.21)), ("base", (0.04, 0.06)), ("u0", (0.5, 0.55))):
        values = np.array([getattr(p, name) for p in drawn])
        assert values.min() >= lo and values.max() <= hi
        assert values.mean() == pytest.approx((lo + hi) / 2, abs=(hi - lo) / 10)
    assert TextureConfig().threshold == 0.12
    assert set(EXTREMES_Z) == {3.0, 6.0, 9.0, 12.0, 15.0}


@pytest.mark.parametrize("sigmas", [(3.0, 4.0), (6.0, 4.0)])
def test_per_box_texture_matches_the_original_algorithm(sigmas):
    """Same one- and two-point statistics as the literal algorithm, away from its borders."""
    rng = np.random.default_rng(3)
    params = TextureParams(sigmas[0], sigmas[1], scale=0.2, base=0.05, u0=0.525)
    ref = reference_texture((112, 112, 112), params, rng)
    margin = int(4 * sum(sigmas)) + 1
    inner = ref.texture[margin:-margin, margin:-margin, margin:-margin]
    # The literal field's own extremes set its contrast; give the model the same ones.
    extremes = (ref.z_min, ref.z_max)
    assert texture_law(params, extremes).beta == pytest.approx(ref.beta, rel=0.03)
    ours = np.stack([texture_field((48, 48, 48), (1.0, 1.0, 1.0), params, rng, extremes) for _ in range(4)])
    assert ours.mean() == pytest.approx(inner.mean(), abs=0.015)
    assert ours.std() == pytest.approx(inner.std(), rel=0.3)
    for lag in (2, 6):
        assert lag_correlation(ours, lag, 3) == pytest.approx(lag_correlation(inner, lag, 2), abs=0.08)
