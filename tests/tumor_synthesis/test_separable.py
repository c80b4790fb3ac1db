"""Separable filters as matrix products, against scipy's and torch's own filters."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from tumor_synthesis.separable import DENSE_MAX, TRUNCATE, apply_separable, blur_matrix, resize_matrix

# Boxes with axes shorter than the kernel, around the dense/banded switch and well past it.
SHAPES = [(3, 5, 2), (20, 9, 33), (DENSE_MAX + 1, 40, 7), (150, 70, 2 * DENSE_MAX + 5)]


@pytest.mark.parametrize("mode", ["reflect", "nearest"])
@pytest.mark.parametrize("shape", SHAPES)
def test_blur_equals_scipy_gaussian_filter(shape, mode):
    rng = np.random.default_rng(0)
    sigma = (1.7, 0.8, 2.3)
    for field in (rng.random(shape) < 0.03, rng.normal(size=shape)):
        field = field.astype(np.float32)
        expected = ndimage.gaussian_filter(field, sigma, mode=mode, truncate=TRUNCATE)
        got = apply_separable(torch.from_numpy(field), [blur_matrix(n, s, mode) for n, s in zip(shape, sigma)])
        np.testing.assert_allclose(got.numpy(), expected, atol=2e-6, rtol=0)
        if field.min() >= 0:  # a mask: the blurred support is scipy's, voxel for voxel
            np.testing.assert_array_equal(got.numpy() != 0, expected != 0)


def test_blur_rows_sum_to_one_and_vanish_beyond_the_radius():
    sigma, n = 1.5, 40
    matrix = blur_matrix(n, sigma)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)
    radius = int(TRUNCATE * sigma + 0.5)
    rows, cols = np.nonzero(matrix)
    assert np.abs(rows - cols).max() == radius


@pytest.mark.parametrize("grid,image", [((10, 12, 7), (20, 24, 14)), ((40, 33, 70), (80, 66, 140)),
                                        ((9, 9, 9), (17, 18, 20)), ((6, 5, 4), (6, 5, 4))])
def test_resize_equals_torch_trilinear(grid, image):
    field = torch.rand(grid, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(field[None, None], size=image, mode="trilinear", align_corners=False)[0, 0]
    got = apply_separable(field, [resize_matrix(o, i) for o, i in zip(image, grid)])
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_resize_then_blur_is_one_product():
    """The growth model resamples and blurs in one pass: the product of the two matrices."""
    rng = np.random.default_rng(1)
    grid, image, sigma = (12, 15, 9), (24, 30, 18), (1.2, 1.2, 2.0)
    field = torch.from_numpy(rng.random(grid).astype(np.float32))
    resized = F.interpolate(field[None, None], size=image, mode="trilinear", align_corners=False)[0, 0]
    expected = ndimage.gaussian_filter(resized.numpy(), sigma, mode="nearest", truncate=TRUNCATE)
    matrices = [blur_matrix(o, s, "nearest") @ resize_matrix(o, i) for o, i, s in zip(image, grid, sigma)]
    np.testing.assert_allclose(apply_separable(field, matrices).numpy(), expected, atol=2e-6, rtol=0)


def test_unknown_border_is_refused():
    with pytest.raises(ValueError, match="mode"):
        blur_matrix(5, 1.0, "wrap")
