"""Tests of evaluation.metrics: Dice and NSD against hand-made masks and surface_distance."""

import numpy as np
import pytest
import surface_distance
from scipy import ndimage

from labelfree.evaluation.metrics import (
    case_metrics,
    dice,
    empty_both_score,
    normalized_surface_dice,
    overlap_metrics,
)

from labelfree.masks import bounding_box


def _cube(shape, lo, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(l, l + s) for l, s in zip(lo, size))] = True
    return mask


def _ellipsoid(shape, center, radii):
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, center, radii)) <= 1.0


def _package_nsd(pred, ref, spacing, tol):
    distances = surface_distance.compute_surface_distances(ref.astype(bool), pred.astype(bool), spacing)
    return surface_distance.compute_surface_dice_at_tolerance(distances, tol)


def test_dice_of_two_cubes_with_known_overlap():
    a = _cube((30, 30, 30), (5, 5, 5), (10, 10, 10))
    b = _cube((30, 30, 30), (10, 5, 5), (10, 10, 10))  # half of a
    assert dice(a, b) == pytest.approx(2 * 500 / 2000)
    c = _cube((30, 30, 30), (5, 5, 5), (10, 10, 5))  # inside a, 500 voxels
    assert dice(a, c) == pytest.approx(2 * 500 / 1500)
    assert dice(a, a) == 1.0
    assert dice(a, _cube((30, 30, 30), (20, 20, 20), (5, 5, 5))) == 0.0


def test_dice_accepts_integer_masks():
    a = _cube((12, 12, 12), (2, 2, 2), (4, 4, 4)).astype(np.uint8) * 2
    b = _cube((12, 12, 12), (2, 2, 4), (4, 4, 4)).astype(np.uint8)
    assert dice(a, b) == pytest.approx(2 * 32 / 128)


@pytest.mark.parametrize("metric", ["dice", "nsd"])
def test_empty_masks_follow_the_convention(metric):
    empty = np.zeros((10, 10, 10), dtype=bool)
    full = _cube((10, 10, 10), (3, 3, 3), (3, 3, 3))
    if metric == "dice":
        score = lambda p, r: dice(p, r)  # noqa: E731
    else:
        score = lambda p, r: normalized_surface_dice(p, r, (1.0, 1.0, 2.0), 2.0)  # noqa: E731
    assert score(empty, empty) == 1.0
    assert score(full, empty) == 0.0
    assert score(empty, full) == 0.0


@pytest.mark.parametrize("convention", ["nan", "one"])
def test_two_empty_masks_score_as_the_chosen_convention_and_the_rest_does_not_change(convention):
    empty_both = empty_both_score(convention)
    empty = np.zeros((10, 10, 10), dtype=bool)
    ref = _cube((10, 10, 10), (3, 3, 3), (4, 3, 3))
    pred = _cube((10, 10, 10), (4, 3, 3), (4, 3, 3))
    both_empty = overlap_metrics(empty, empty, (1.0, 1.0, 2.0), 2.0, empty_both)
    # The original's numbers for two empty masks: its Dice 0/0 and surface-distance's NSD are NaN.
    with np.errstate(invalid="ignore"):
        original_dice = 2.0 * np.sum(empty & empty) / (np.sum(empty) + np.sum(empty))
        original_nsd = _package_nsd(empty, empty, (1.0, 1.0, 2.0), 2.0)
    assert np.isnan(original_dice) and np.isnan(original_nsd)
    if convention == "nan":
        assert np.isnan(both_empty["dice"]) and np.isnan(both_empty["nsd"])
        assert np.isnan(dice(empty, empty, empty_both))
    else:
        assert both_empty == {"dice": 1.0, "nsd": 1.0}
    # Exactly one empty: 0 under both; two non-empty masks: the same numbers as ever.
    assert overlap_metrics(ref, empty, (1.0, 1.0, 2.0), 2.0, empty_both) == {"dice": 0.0, "nsd": 0.0}
    scores = overlap_metrics(pred, ref, (1.0, 1.0, 2.0), 0.5, empty_both)
    assert scores["dice"] == pytest.approx(2 * 27 / 72)  # 3 of 4 slabs of 3x3 overlap, by hand
    assert scores["nsd"] == pytest.approx(_package_nsd(pred, ref, (1.0, 1.0, 2.0), 0.5), abs=1e-12)
    assert 0.0 < scores["nsd"] < 1.0
    regions = case_metrics(np.zeros((10, 10, 10), np.uint8), np.zeros((10, 10, 10), np.uint8), (1.0, 1.0, 1.0),
                           {"liver": (1, 2), "tumor": (2,)}, 2.0, empty_both)
    assert all((np.isnan(v) if convention == "nan" else v == 1.0) for v in regions.values())


def test_an_unknown_empty_mask_convention_is_refused():
    with pytest.raises(ValueError, match="expected one of"):
        empty_both_score("zero")


def test_overlap_metrics_on_empty_pair_is_one_and_never_nan():
    empty = np.zeros((6, 7, 8), dtype=np.uint8)
    assert overlap_metrics(empty, empty, (0.7, 0.7, 3.0)) == {"dice": 1.0, "nsd": 1.0}


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.8, 2.5), (3.0, 0.5, 1.2)])
def test_nsd_matches_surface_distance_called_directly(spacing):
    rng = np.random.default_rng(0)
    shape = (40, 36, 30)
    ref = _ellipsoid(shape, (20, 18, 15), (12, 9, 7))
    # A blobby, shifted prediction that also touches the array border.
    pred = _ellipsoid(shape, (23, 17, 16), (13, 8, 8)) | _cube(shape, (0, 0, 0), (4, 6, 3))
    pred &= rng.random(shape) > 0.05
    for tol in (0.5, 1.0, 2.0, 4.0):
        expected = _package_nsd(pred, ref, spacing, tol)
        assert 0.0 < expected < 1.0
        assert normalized_surface_dice(pred, ref, spacing, tol) == pytest.approx(expected, abs=1e-12)
        assert overlap_metrics(pred, ref, spacing, tol)["nsd"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_nsd_matches_surface_distance_at_tolerances_that_tie_with_voxel_distances(seed):
    rng = np.random.default_rng(seed)
    spacing = tuple(rng.choice([0.5, 0.8, 1.0, 1.5, 2.5], size=3))
    shape = (24, 22, 20)
    ref = ndimage.binary_opening(rng.random(shape) > 0.6, iterations=1)
    pred = ndimage.binary_opening(rng.random(shape) > 0.6, iterations=1)
    s0, s1, s2 = spacing
    ties = [0.0, s0, s1, s2, 2 * s0, float(np.sqrt(s0**2 + s1**2)), float(np.sqrt(s0**2 + s1**2 + s2**2)), 3.0]
    for tol in ties:
        assert normalized_surface_dice(pred, ref, spacing, tol) == pytest.approx(
            _package_nsd(pred, ref, spacing, tol), abs=1e-12
        ), f"tolerance {tol} mm, spacing {spacing}"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nsd_of_a_one_voxel_shift_steps_at_the_spacing(axis):
    spacing = [1.5, 1.5, 1.5]
    spacing[axis] = 1.0  # the shift distance in mm is the smallest spacing
    ref = _cube((24, 24, 24), (6, 6, 6), (10, 10, 10))
    pred = np.roll(ref, 1, axis=axis)
    below = normalized_surface_dice(pred, ref, spacing, 0.9)
    above = normalized_surface_dice(pred, ref, spacing, 1.05)
    assert above == 1.0  # every surface element is within one voxel (1 mm) of the other surface
    assert normalized_surface_dice(pred, ref, spacing, 1.0) == 1.0  # the tolerance is inclusive
    assert 0.0 < below < 1.0  # the faces across the shift are 1 mm apart, beyond 0.9 mm
    assert below == pytest.approx(_package_nsd(pred, ref, spacing, 0.9), abs=1e-12)
    # Dice of a 10-voxel cube shifted by one voxel: 9/10 overlap.
    assert dice(pred, ref) == pytest.approx(0.9)


def test_nsd_is_zero_for_surfaces_farther_apart_than_the_tolerance():
    ref = _cube((40, 20, 20), (2, 5, 5), (6, 6, 6))
    pred = _cube((40, 20, 20), (25, 5, 5), (6, 6, 6))  # 17 voxels of gap at 1 mm
    assert normalized_surface_dice(pred, ref, (1.0, 1.0, 1.0), 2.0) == 0.0
    assert normalized_surface_dice(ref, ref, (1.0, 1.0, 1.0), 0.0) == 1.0


def test_nsd_rejects_bad_spacing_and_shape():
    a = np.ones((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match="spacing"):
        normalized_surface_dice(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="shape"):
        dice(a, np.ones((4, 4, 5), dtype=bool))


def test_bounding_box_with_margin_is_clipped_to_the_array():
    mask = _cube((10, 10, 10), (0, 4, 8), (2, 2, 2))
    assert bounding_box(mask, margin=1) == (slice(0, 3), slice(3, 7), slice(7, 10))
    assert bounding_box(np.zeros((3, 3, 3), dtype=bool)) is None


def test_case_metrics_counts_tumor_as_part_of_the_organ():
    ref = np.zeros((20, 20, 20), dtype=np.uint8)
    ref[2:12, 2:12, 2:12] = 1
    ref[4:8, 4:8, 4:8] = 2
    pred = ref.copy()
    pred[4:8, 4:8, 4:8] = 1  # tumor missed, but still organ
    scores = case_metrics(pred, ref, (1.0, 1.0, 1.0), {"liver": (1, 2), "tumor": (2,)})
    assert list(scores) == ["liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"]
    assert scores["liver_dice"] == 1.0 and scores["liver_nsd"] == 1.0
    assert scores["tumor_dice"] == 0.0 and scores["tumor_nsd"] == 0.0
