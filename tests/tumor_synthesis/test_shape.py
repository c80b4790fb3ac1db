"""Tumor shapes: ellipsoid, elasticdeform-exact deformation, physical size at any spacing."""

import numpy as np
import pytest

from tumor_synthesis.shape import (
    DEFORMATION_AXES,
    box_shape,
    control_matrix,
    crop_to_content,
    deform_pass,
    ellipsoid,
    tumor_shape,
)
from tumor_synthesis.sizes import SIZE_CLASSES, TumorSpec


def embed(mask, origin, full):
    out = np.zeros(full, dtype=np.int64)
    if mask.size:
        out[tuple(slice(o, o + n) for o, n in zip(origin, mask.shape))] = mask
    return out


@pytest.mark.parametrize("radii", [(3, 3, 3), (4, 5, 3), (8, 6, 10), (16, 12, 20), (40, 24, 33)])
def test_ellipsoid_matches_the_original_definition(radii):
    mask, origin, full = ellipsoid(radii, (1.0, 1.0, 1.0))
    assert full == tuple(4 * r for r in radii)
    # The original: a box of 4 r per side, centre at 2 r, voxel i inside when
    # 1 - sum(((i - 2r) / r)^2) > 0, coordinates from -1 to 1 in 2 r + 1 ogrid steps.
    grids = np.ogrid[tuple(slice(-1.0, 1.0, complex(0, 2 * r + 1)) for r in radii)]
    inside = (1 - sum(g**2 for g in grids)).clip(0, None) > 0
    expected = np.zeros(full, dtype=np.int64)
    expected[tuple(slice(r, 3 * r + 1) for r in radii)] = inside
    assert np.array_equal(embed(mask, origin, full), expected)
    a, b, c = radii
    assert mask.sum() == pytest.approx(4 / 3 * np.pi * a * b * c, rel=0.25)


def test_control_matrix_is_a_partition_of_unity_through_the_control_points():
    for n in (2, 7, 16, 161):
        m = control_matrix(n)
        assert m.shape == (n, 3)
        # A constant grid gives a constant displacement; the end voxels sit on control points.
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
        grid = np.array([1.0, -2.0, 5.0])
        np.testing.assert_allclose((m @ grid)[[0, -1]], grid[[0, -1]], atol=1e-12)


def test_deformation_is_bit_identical_to_elasticdeform():
    elasticdeform = pytest.importorskip("elasticdeform")
    rng = np.random.default_rng(0)
    for _ in range(30):
        radii = tuple(int(r) for r in rng.integers(3, 17, size=3))
        sigma = float(rng.choice([0.7, 2.0, 5.0, 10.0]))
        mask, origin, full = ellipsoid(radii, (1.0, 1.0, 1.0))
        reference = embed(mask, origin, full)
        for axes in DEFORMATION_AXES:
            displacement = rng.standard_normal((2, 3, 3)) * sigma
            reference = elasticdeform.deform_grid(reference, displacement, order=0, axis=axes)
            mask, origin = deform_pass(mask, origin, full, axes, displacement)
            assert np.array_equal(embed(mask, origin, full), reference), (radii, sigma, axes)


def test_crop_to_content_keeps_every_voxel():
    rng = np.random.default_rng(1)
    mask = np.zeros((20, 30, 10), dtype=bool)
    mask[5:9, 10:12, 3] = rng.random((4, 2)) > 0.3
    mask[6, 11, 3] = True
    cropped, origin = crop_to_content(mask, (2, 3, 4))
    assert np.array_equal(embed(cropped, np.subtract(origin, (2, 3, 4)), mask.shape).astype(bool), mask)


@pytest.mark.parametrize("size", list(SIZE_CLASSES))
def test_deformed_tumors_keep_about_the_ellipsoid_volume(size):
    rng = np.random.default_rng(2)
    ratios = []
    for _ in range(12):
        radii = SIZE_CLASSES[size].sample_radii(rng)
        spec = TumorSpec(size, radii, SIZE_CLASSES[size].sample_sigma(rng))
        shape = tumor_shape(spec, (1.0, 1.0, 1.0), rng)
        assert shape.mask.dtype == bool and shape.mask.any()
        # The anchor (box centre) lies inside the tumor's extent.
        assert all(0 <= a < n for a, n in zip(shape.anchor, shape.mask.shape))
        ratios.append(shape.mask.sum() / (4 / 3 * np.pi * np.prod(radii)))
    assert 0.7 < np.mean(ratios) < 1.3


@pytest.mark.parametrize("spacing", [(2.0, 2.0, 2.0), (0.8, 0.8, 2.5)])
def test_tumors_keep_their_physical_size_at_other_spacings(spacing):
    rng = np.random.default_rng(3)
    spec = TumorSpec("medium", (16, 12, 20), 3.0)
    expected_box = tuple(max(2, 2 * round(2 * r / s)) for r, s in zip(spec.radii_mm, spacing))
    assert box_shape(spec.radii_mm, spacing) == expected_box
    volumes, extents = [], []
    for _ in range(10):
        shape = tumor_shape(spec, spacing, rng)
        volumes.append(shape.mask.sum() * np.prod(spacing))
        extents.append([n * s for n, s in zip(shape.mask.shape, spacing)])
    assert np.mean(volumes) == pytest.approx(4 / 3 * np.pi * 16 * 12 * 20, rel=0.25)
    # Full extents in mm stay close to the diameters whatever the voxel size.
    np.testing.assert_allclose(np.mean(extents, axis=0), [32, 24, 40], rtol=0.3)
