"""realism_stats: each per-lesion statistic against a hand-computed value on a constructed lesion.

The lesion: a ball of radius R in a uniform organ, its HU step blurred by a Gaussian of sigma
s. The blurred ball has a closed form (the convolution of a ball's indicator with an
isotropic Gaussian, by radius r from the centre):

    f(r) = 1/2 [erf((R - r) / (s sqrt 2)) + erf((R + r) / (s sqrt 2))]
           - s / (r sqrt(2 pi)) [exp(-(R - r)^2 / (2 s^2)) - exp(-(R + r)^2 / (2 s^2))]

so the expected lesion mean, ring mean and shell mean are radial integrals of f (scipy.quad)
and the expected boundary gradient is the radial central difference of f at r = R.
"""

import math

import numpy as np
import pytest
from scipy import integrate, special

from labelfree.apps.realism.stats import (
    StatsConfig,
    compactness,
    compare_populations,
    distribution_distance,
    lesion_statistics,
    summarize,
)

ORGAN_HU = 100.0


def blurred_ball(r, radius, sigma):
    r = np.maximum(r, 1e-9)
    a, b = (radius - r) / (sigma * math.sqrt(2)), (radius + r) / (sigma * math.sqrt(2))
    tail = sigma / (r * math.sqrt(2 * math.pi)) * (np.exp(-a ** 2) - np.exp(-b ** 2))
    return 0.5 * (special.erf(a) + special.erf(b)) - tail


def radial_mean(radius, sigma, r0, r1):
    """Mean of f over the spherical shell r0 < r < r1 (volume-weighted)."""
    num = integrate.quad(lambda r: blurred_ball(r, radius, sigma) * r * r, r0, r1)[0]
    return num / ((r1 ** 3 - r0 ** 3) / 3.0)


def ball_case(n=48, radius=8.0, sigma=1.5, contrast=-60.0, spacing=1.0, noise=0.0, seed=0):
    """(image HU, label 0/1/2, radius grid): a uniform organ filling the volume, one blurred ball."""
    g = (np.indices((n, n, n)).astype(float) - n / 2 + 0.5) * spacing
    r = np.sqrt((g ** 2).sum(axis=0))
    image = ORGAN_HU + contrast * blurred_ball(r, radius, sigma)
    image = image + np.random.default_rng(seed).normal(0.0, noise, image.shape) if noise else image
    label = np.ones(image.shape, dtype=np.uint8)
    label[r <= radius] = 2
    return image.astype(np.float32), label, r


def test_ball_statistics_match_the_closed_form():
    radius, sigma, contrast = 8.0, 1.5, -60.0
    image, label, r = ball_case(radius=radius, sigma=sigma, contrast=contrast)
    config = StatsConfig()
    records, components = lesion_statistics(image, label, 1, 2, (1.0, 1.0, 1.0), config)
    assert len(records) == 1 and components.max() == 1
    rec = records[0]

    # Volume: the voxel count of the labelled ball, and close to 4/3 pi R^3.
    assert rec["volume_ml"] == pytest.approx(np.count_nonzero(r <= radius) / 1000.0)
    assert rec["volume_ml"] == pytest.approx(4 / 3 * math.pi * radius ** 3 / 1000.0, rel=0.03)

    lesion = radial_mean(radius, sigma, 0.0, radius)
    ring = radial_mean(radius, sigma, radius, radius + config.ring_mm)
    shell = radial_mean(radius, sigma, radius + config.shell_mm[0], radius + config.shell_mm[1])
    assert rec["organ_hu"] == pytest.approx(ORGAN_HU + contrast * shell, abs=0.2)
    assert rec["difference_hu"] == pytest.approx(contrast * (lesion - shell), rel=0.02)
    assert rec["halo"] == pytest.approx((ring - shell) / (lesion - shell), abs=0.015)
    # The halo of the original's labelling (label = the unblurred ball): about a sixth of the drop.
    assert 0.12 < rec["halo"] < 0.22

    expected_gradient = abs(contrast) * (blurred_ball(radius - 1, radius, sigma) - blurred_ball(radius + 1, radius, sigma)) / 2
    assert rec["boundary_gradient_hu_mm"] == pytest.approx(expected_gradient, rel=0.05)
    assert rec["compactness"] == pytest.approx(1.0, abs=0.01)
    # The organ fills the volume: its surface is the scan's face, 24 voxels from the centre voxel.
    assert rec["depth_mm"] == pytest.approx(24.0)
    assert rec["min_depth_mm"] == pytest.approx(24.0 - 7.0)
    assert rec["z_position"] == pytest.approx(0.5, abs=0.02)


def test_sharp_lesion_has_no_halo_and_its_full_contrast():
    image, label, _ = ball_case(radius=6.0, sigma=0.05, contrast=80.0)
    rec = lesion_statistics(image, label, 1, 2, (1.0, 1.0, 1.0))[0][0]
    assert rec["difference_hu"] == pytest.approx(80.0, abs=0.5)
    assert rec["halo"] == pytest.approx(0.0, abs=0.01)
    assert rec["texture_sd_hu"] == pytest.approx(0.0, abs=0.5)


def test_texture_sd_reads_the_noise_of_the_interior():
    image, label, _ = ball_case(radius=10.0, sigma=1.0, contrast=-50.0, noise=20.0, seed=3)
    rec = lesion_statistics(image, label, 1, 2, (1.0, 1.0, 1.0))[0][0]
    assert rec["texture_sd_hu"] == pytest.approx(20.0, rel=0.08)


def test_physical_units_at_anisotropic_spacing():
    """The same ball sampled at 1 x 1 x 2 mm: volume, gradient and difference stay in mm / HU."""
    radius, sigma, contrast = 9.0, 1.5, -60.0
    n = (48, 48, 24)
    g = np.stack(np.meshgrid(*[(np.arange(k) - k / 2 + 0.5) * s for k, s in zip(n, (1.0, 1.0, 2.0))], indexing="ij"))
    r = np.sqrt((g ** 2).sum(axis=0))
    image = (ORGAN_HU + contrast * blurred_ball(r, radius, sigma)).astype(np.float32)
    label = np.where(r <= radius, 2, 1).astype(np.uint8)
    rec = lesion_statistics(image, label, 1, 2, (1.0, 1.0, 2.0))[0][0]
    assert rec["volume_ml"] == pytest.approx(4 / 3 * math.pi * radius ** 3 / 1000.0, rel=0.04)
    shell = radial_mean(radius, sigma, radius + 4.0, radius + 10.0)
    assert rec["difference_hu"] == pytest.approx(contrast * (radial_mean(radius, sigma, 0, radius) - shell), rel=0.03)
    # In-plane boundary voxels dominate the median: the radial central difference over +-1 mm.
    expected = abs(contrast) * (blurred_ball(radius - 1, radius, sigma) - blurred_ball(radius + 1, radius, sigma)) / 2
    assert rec["boundary_gradient_hu_mm"] == pytest.approx(expected, rel=0.12)


def test_compactness_of_a_prolate_spheroid():
    a, b = 12.0, 4.0
    g = np.indices((48, 24, 24)).astype(float)
    g -= np.array([24, 12, 12], dtype=float)[:, None, None, None] - 0.5
    mask = (g[0] / a) ** 2 + (g[1] / b) ** 2 + (g[2] / b) ** 2 <= 1
    expected = 3 * (a * b * b) ** (2 / 3) / (a * a + 2 * b * b)  # 0.567
    assert compactness(mask, (1.0, 1.0, 1.0)) == pytest.approx(expected, rel=0.06)


def test_other_lesions_and_small_fragments():
    """Two balls: each is its own lesion, the other is not in its ring or shell; a 3-voxel speck is skipped."""
    n = 64
    g = np.indices((n, n, n)).astype(float)
    r1 = np.sqrt(((g - np.array([20, 32, 32])[:, None, None, None]) ** 2).sum(0))
    r2 = np.sqrt(((g - np.array([40, 32, 32])[:, None, None, None]) ** 2).sum(0))
    image = np.full((n, n, n), ORGAN_HU, dtype=np.float32)
    image[r1 <= 6] -= 50.0
    image[r2 <= 6] -= 90.0
    label = np.ones((n, n, n), dtype=np.uint8)
    label[(r1 <= 6) | (r2 <= 6)] = 2
    label[5, 5, 5:8] = 2
    records, _ = lesion_statistics(image, label, 1, 2, (1.0, 1.0, 1.0), StatsConfig(min_voxels=8))
    assert sorted(round(r["difference_hu"]) for r in records) == [-90, -50]
    assert all(r["halo"] == pytest.approx(0.0, abs=1e-6) for r in records)


def test_summaries_and_distances():
    rng = np.random.default_rng(0)
    real = rng.normal(0.0, 1.0, 400)
    s = summarize(np.r_[real, np.nan])
    assert s["n"] == 400 and s["median"] == pytest.approx(np.median(real))
    assert s["p10"] == pytest.approx(np.percentile(real, 10))
    same = distribution_distance(real, rng.normal(0.0, 1.0, 400))
    shifted = distribution_distance(real, rng.normal(2.0, 1.0, 400))
    spread = np.percentile(real, 90) - np.percentile(real, 10)
    assert shifted["w1"] == pytest.approx(2.0, abs=0.2)
    assert shifted["w1_norm"] == pytest.approx(shifted["w1"] / spread)
    assert same["w1_norm"] < 0.1 < shifted["w1_norm"]
    assert same["ks_p"] > 0.01 > shifted["ks_p"]
    assert math.isnan(distribution_distance([], [1.0])["w1"])
    table = compare_populations([{"halo": 0.0}, {"halo": 0.1}], [{"halo": 0.3}], names=("halo",))
    assert table["halo"]["real"]["n"] == 2 and table["halo"]["synthetic"]["median"] == 0.3


def test_bad_inputs():
    with pytest.raises(ValueError, match="one shape"):
        lesion_statistics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), 1, 2, (1, 1, 1))
    with pytest.raises(ValueError, match="ring"):
        StatsConfig(ring_mm=0.0)
    assert lesion_statistics(np.zeros((4, 4, 4)), np.ones((4, 4, 4), np.uint8), 1, 2, (1, 1, 1))[0] == []


def test_frechet_distance_equals_monai_and_counts_a_shift_in_real_sds():
    import torch
    from monai.metrics.fid import get_fid_score

    from labelfree.apps.realism.stats import feature_matrix, frechet, frechet_distance

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 5)), rng.normal(size=(60, 5)) * 1.5 + 0.4
    assert frechet(a, b) == pytest.approx(float(get_fid_score(torch.from_numpy(b), torch.from_numpy(a))), rel=1e-9)
    names = ("difference_hu", "halo", "volume_ml")

    def lesions(n, shift):
        return [{"difference_hu": -50 + 10 * rng.normal() + shift, "halo": 0.05 + 0.02 * rng.normal(),
                 "volume_ml": 10 ** rng.normal()} for _ in range(n)]

    real = lesions(400, 0.0)
    assert feature_matrix(real + [{"difference_hu": math.nan, "halo": 0.0, "volume_ml": 1.0}], names).shape == (400, 3)
    same = frechet_distance(real, lesions(400, 0.0), names, n_boot=200)
    shifted = frechet_distance(real, lesions(400, 20.0), names, n_boot=200)  # 2 real SDs on one statistic
    assert same["frechet"] < 0.1 and same["ci95"][0] <= same["frechet"] <= same["ci95"][1]
    assert shifted["frechet"] == pytest.approx(4.0, abs=0.6) and shifted["ci95"][0] > same["ci95"][1]
    assert math.isnan(frechet_distance(real[:1], real, names)["frechet"])
    # One faint lesion with an absurd ratio moves the distance by at most its clipped share.
    outlier = lesions(399, 0.0) + [{"difference_hu": -50.0, "halo": 1e4, "volume_ml": 1.0}]
    assert frechet_distance(real, outlier, names, n_boot=10)["frechet"] < 0.5
