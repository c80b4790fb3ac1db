"""Tests of evaluation.postprocess: largest organ component and the tumor margin around it."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from labelfree.inference.postprocess import postprocess_labels, within_distance

from labelfree.masks import largest_component


def _labels(shape=(60, 60, 60)):
    labels = np.zeros(shape, dtype=np.uint8)
    labels[10:30, 10:30, 10:30] = 1  # the organ
    return labels


def test_keeps_the_largest_organ_component_and_tumors_inside_it():
    labels = _labels()
    labels[15:20, 15:20, 15:20] = 2  # tumor inside the organ
    labels[50:53, 50:53, 50:53] = 1  # small spurious organ blob
    out = postprocess_labels(labels, (1.0, 1.0, 1.0))
    assert out.dtype == labels.dtype and out.shape == labels.shape
    assert not out[50:53, 50:53, 50:53].any()
    np.testing.assert_array_equal(out[:40, :40, :40], labels[:40, :40, :40])


def test_tumor_margin_is_measured_in_mm():
    labels = _labels((80, 60, 60))
    labels[45:47, 18:20, 18:20] = 2  # 16 voxels past the organ along axis 0
    labels[18:20, 18:20, 45:47] = 2  # 16 voxels past the organ along axis 2
    # 1 mm along axis 0 (16 mm away, kept), 2 mm along axis 2 (32 mm away, removed).
    out = postprocess_labels(labels, (1.0, 1.0, 2.0), tumor_margin_mm=30.0)
    assert (out[45:47, 18:20, 18:20] == 2).all()
    assert not out[18:20, 18:20, 45:47].any()
    # At 1 mm everywhere both are within 30 mm.
    out_iso = postprocess_labels(labels, (1.0, 1.0, 1.0), tumor_margin_mm=30.0)
    assert (out_iso == labels).all()


def test_far_away_tumor_is_dropped_and_near_one_kept():
    labels = _labels((100, 40, 40))
    labels[35:38, 15:18, 15:18] = 2  # 6 mm from the organ
    labels[90:95, 15:20, 15:20] = 2  # 61 mm from the organ
    out = postprocess_labels(labels, (1.0, 1.0, 1.0))
    assert (out[35:38, 15:18, 15:18] == 2).all()
    assert not out[90:95].any()


def test_a_tumor_cutting_the_organ_in_two_keeps_both_halves():
    labels = _labels()
    labels[19:21, 10:30, 10:30] = 2  # a slab of tumor across the whole organ
    out = postprocess_labels(labels, (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(out, labels)


def test_a_big_false_tumor_blob_does_not_outvote_the_organ():
    labels = np.zeros((80, 40, 40), dtype=np.uint8)
    labels[5:15, 5:15, 5:15] = 1  # organ: 1000 voxels
    labels[40:70, 5:35, 5:35] = 2  # tumor blob: 27000 voxels, starting 26 mm past the organ
    labels[45:50, 10:12, 10:12] = 1  # a few organ voxels inside the blob
    out = postprocess_labels(labels, (1.0, 1.0, 1.0), tumor_margin_mm=30.0)
    assert (out[5:15, 5:15, 5:15] == 1).all()
    assert not (out[40:70] == 1).any()  # the organ bits inside the blob are not the organ
    assert (out[40:45, 5:15, 5:15] == 2).all()  # within 30 mm of the organ
    assert not out[45:70].any()  # farther than 30 mm


def test_without_organ_all_tumors_are_dropped():
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[5:10, 5:10, 5:10] = 2
    assert not postprocess_labels(labels, (1.0, 1.0, 1.0)).any()


def test_each_organ_tumor_pair_is_processed_independently():
    labels = np.zeros((90, 30, 30), dtype=np.uint8)
    labels[2:12, 5:15, 5:15] = 1  # liver
    labels[50:60, 5:15, 5:15] = 3  # pancreas
    labels[55:57, 8:10, 8:10] = 4  # pancreas tumor inside the pancreas
    labels[14:16, 8:10, 8:10] = 4  # pancreas tumor next to the liver but 34 mm from the pancreas
    labels[85:88, 5:8, 5:8] = 3  # spurious pancreas blob
    out = postprocess_labels(labels, (1.0, 1.0, 1.0), organ_tumor_pairs=((1, 2), (3, 4)))
    assert (out[2:12, 5:15, 5:15] == 1).all()
    assert (out[55:57, 8:10, 8:10] == 4).all()
    assert not out[14:16].any()
    assert not out[85:88].any()


def test_largest_component_counts_the_given_mask():
    mask = np.zeros((30, 10, 10), dtype=bool)
    mask[0:5] = True
    mask[10:25] = True
    np.testing.assert_array_equal(largest_component(mask), np.pad(np.ones((15, 10, 10), bool), ((10, 5), (0, 0), (0, 0))))
    count = np.zeros_like(mask)
    count[1, 1, 1] = True
    assert largest_component(mask, count=count)[0:5].all()
    assert not largest_component(np.zeros((3, 3, 3), dtype=bool)).any()


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.3, 2.5)])
def test_within_distance_matches_brute_force(spacing):
    rng = np.random.default_rng(1)
    shape = (14, 12, 10)
    anchor = rng.random(shape) > 0.985
    query = rng.random(shape) > 0.7
    got = within_distance(anchor, query, 3.0, spacing)
    points = np.argwhere(anchor) * np.asarray(spacing)
    queries = np.argwhere(query)
    nearest = cdist(queries * np.asarray(spacing), points).min(axis=1)
    expected = np.zeros(shape, dtype=bool)
    expected[tuple(queries[nearest <= 3.0].T)] = True
    assert anchor.any() and expected.any() and not expected[query].all()
    np.testing.assert_array_equal(got, expected)
