"""Intensity model: cluster-wise blur equals the original's whole-crop blur; HU updates."""

import numpy as np
import pytest
from scipy import ndimage

from tumor_synthesis.intensity import (
    SPARSE_MIN_VOXELS,
    apply_change,
    blur_radius_vox,
    merge_boxes,
    sample_intensity,
    soft_mask,
)


def random_boxes(rng, shape, n, max_size=12):
    boxes = []
    for _ in range(n):
        size = rng.integers(2, max_size, size=3)
        lo = rng.integers(-3, np.array(shape) - 2)
        boxes.append((np.maximum(lo, 0), np.minimum(lo + size, shape)))
    return boxes


def test_merged_boxes_are_disjoint_and_cover_their_members():
    rng = np.random.default_rng(0)
    for _ in range(20):
        boxes = random_boxes(rng, (60, 50, 40), int(rng.integers(1, 25)))
        merged = merge_boxes(boxes)
        members = sorted(k for _, _, m in merged for k in m)
        assert members == list(range(len(boxes)))
        for i, (lo, hi, m) in enumerate(merged):
            for k in m:
                assert np.all(lo <= boxes[k][0]) and np.all(boxes[k][1] <= hi)
            for lo2, hi2, _ in merged[i + 1 :]:
                assert not (np.all(lo < hi2) and np.all(lo2 < hi))


@pytest.mark.parametrize("sigma_vox", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.5, 1.5, 0.5)])
def test_blurring_cluster_boxes_equals_blurring_the_whole_crop(sigma_vox):
    """The engine's shortcut: per merged box with a kernel-radius margin, reflect border."""
    rng = np.random.default_rng(1)
    shape = (50, 44, 36)
    union = np.zeros(shape, dtype=bool)
    pieces = []
    for lo, hi in random_boxes(rng, shape, 12, max_size=10):
        piece = rng.random(tuple(hi - lo)) > 0.3
        union[tuple(slice(a, b) for a, b in zip(lo, hi))] |= piece
        pieces.append((lo, hi))
    margin = np.array(blur_radius_vox(sigma_vox))
    grown = [(np.maximum(lo - margin, 0), np.minimum(hi + margin, shape)) for lo, hi in pieces]
    clustered = np.zeros(shape, dtype=np.float32)
    for lo, hi, _ in merge_boxes(grown):
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        clustered[box] = soft_mask(union[box], sigma_vox)
    np.testing.assert_allclose(clustered, soft_mask(union, sigma_vox), atol=1e-6)


@pytest.mark.parametrize("sigma_vox", [(2.0, 2.0, 2.0), (1.0, 1.5, 0.6)])
def test_large_sparse_mask_equals_scipy_with_its_support(sigma_vox):
    """A big box of scattered tumors skips its empty lines; the blur is still scipy's, zeros included."""
    rng = np.random.default_rng(2)
    shape = (120, 90, 70)
    assert np.prod(shape) >= SPARSE_MIN_VOXELS
    union = np.zeros(shape, dtype=bool)
    for lo, hi in random_boxes(rng, shape, 15, max_size=14):
        union[tuple(slice(a, b) for a, b in zip(lo, hi))] |= rng.random(tuple(hi - lo)) > 0.2
    lines = union.reshape(-1, shape[2]).any(axis=1)
    assert 0 < lines.mean() < 0.5  # the sparse path is the one taken (with a blurred last axis)
    expected = ndimage.gaussian_filter(union.astype(np.float32), sigma_vox)
    got = soft_mask(union, sigma_vox)
    np.testing.assert_allclose(got, expected, atol=2e-6, rtol=0)
    np.testing.assert_array_equal(got != 0, expected != 0)


def test_apply_change_touches_only_organ_voxels_and_rounds_integers():
    image = np.full((4, 4, 2), 100, dtype=np.int16)
    organ = np.zeros((4, 4, 2), dtype=bool)
    organ[1:3, 1:3] = True
    change = np.full((4, 4, 2), -10.4, dtype=np.float32)
    apply_change(image, organ, change)
    assert np.all(image[organ] == 90) and np.all(image[~organ] == 100)
    floats = np.full((4, 4, 2), 100.25, dtype=np.float64)
    apply_change(floats, organ, change)
    np.testing.assert_allclose(floats[organ], 100.25 + np.float32(-10.4))
    assert np.all(floats[~organ] == 100.25)


def test_intensity_parameters_follow_their_ranges():
    rng = np.random.default_rng(2)
    drawn = [sample_intensity(rng, (65.0, 145.0), (1.0, 2.0), -1) for _ in range(500)]
    differences = np.array([p.difference_hu for p in drawn])
    blurs = np.array([p.blur_sigma_mm for p in drawn])
    assert differences.min() >= 65 and differences.max() <= 145
    assert differences.mean() == pytest.approx(105, abs=3)
    assert blurs.min() >= 1 and blurs.max() <= 2 and blurs.mean() == pytest.approx(1.5, abs=0.04)
    assert {p.sign for p in drawn} == {-1}
