"""Tests of evaluation.lesions: lesion detection counts and radius bins on hand-made lesions."""

import math

import numpy as np
import pytest

from labelfree.evaluation.lesions import detect_lesions, equivalent_sphere_radius_mm, radius_bin_names


def _ball(shape, center, radius):
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grid, center)) <= radius**2


def test_radius_bin_names():
    assert radius_bin_names() == ["r0_5", "r5_10", "r10_15", "r15_20", "r20_inf"]
    assert radius_bin_names((0, 2.5, math.inf)) == ["r0_2p5", "r2p5_inf"]


def test_equivalent_sphere_radius_of_a_known_volume():
    # 1000 voxels of 1 x 1 x 2 mm = 2000 mm^3.
    assert equivalent_sphere_radius_mm(1000, (1.0, 1.0, 2.0)) == pytest.approx((3 * 2000 / (4 * math.pi)) ** (1 / 3))


def test_detection_counts_and_radius_bins_on_hand_made_lesions():
    shape = (120, 70, 70)
    ref = np.zeros(shape, dtype=bool)
    ref[5:8, 5:8, 5:8] = True  # 27 voxels: r = 1.86 mm -> [0, 5)
    ref[20:32, 5:17, 5:17] = True  # 1728 voxels: r = 7.44 mm -> [5, 10)
    ref[40:60, 5:25, 5:25] = True  # 8000 voxels: r = 12.4 mm -> [10, 15)
    big = _ball(shape, (90, 35, 35), 23)  # r ~ 23 mm -> [20, inf)
    ref |= big
    pred = np.zeros(shape, dtype=bool)
    pred[7, 7, 7] = True  # one voxel of the tiny lesion: detected
    pred[45:50, 10:15, 10:15] = True  # inside the 12.4 mm lesion: detected
    pred[40:60, 30:35, 30:35] = True  # beside that lesion, touching nothing: false positive
    pred[2, 60, 60] = True  # isolated voxel: false positive
    # the 7.44 mm lesion and the big ball are missed

    counts = detect_lesions(pred, ref, (1.0, 1.0, 1.0))
    assert counts["lesions"] == 4
    assert counts["detected"] == 2
    assert counts["predicted_lesions"] == 4
    assert counts["false_positives"] == 2
    assert [counts[f"lesions_{b}"] for b in radius_bin_names()] == [1, 1, 1, 0, 1]
    assert [counts[f"detected_{b}"] for b in radius_bin_names()] == [1, 0, 1, 0, 0]


def test_spacing_moves_a_lesion_between_bins():
    ref = np.zeros((30, 30, 30), dtype=bool)
    ref[5:15, 5:15, 5:15] = True  # 1000 voxels
    at_1mm = detect_lesions(ref, ref, (1.0, 1.0, 1.0))  # r = 6.2 mm
    at_2mm = detect_lesions(ref, ref, (2.0, 2.0, 2.0))  # r = 12.4 mm
    assert at_1mm["lesions_r5_10"] == 1 and at_1mm["detected_r5_10"] == 1
    assert at_2mm["lesions_r10_15"] == 1 and at_2mm["detected_r10_15"] == 1


def test_a_radius_on_a_bin_edge_goes_to_the_upper_bin():
    ref = np.zeros((10, 10, 10), dtype=bool)
    ref[2:5, 2:5, 2:5] = True
    r = float(equivalent_sphere_radius_mm(27, (1.0, 1.0, 1.0)))
    counts = detect_lesions(ref, ref, (1.0, 1.0, 1.0), radius_bin_edges_mm=(0.0, r, math.inf))
    names = radius_bin_names((0.0, r, math.inf))
    assert counts[f"lesions_{names[0]}"] == 0 and counts[f"lesions_{names[1]}"] == 1


def test_connectivity_decides_whether_corner_touching_voxels_are_one_lesion():
    ref = np.zeros((6, 6, 6), dtype=bool)
    ref[1, 1, 1] = ref[2, 2, 2] = True
    pred = np.zeros_like(ref)
    pred[1, 1, 1] = True
    assert detect_lesions(pred, ref, (1, 1, 1), connectivity=3)["lesions"] == 1
    face_only = detect_lesions(pred, ref, (1, 1, 1), connectivity=1)
    assert face_only["lesions"] == 2 and face_only["detected"] == 1


def test_empty_masks():
    empty = np.zeros((8, 8, 8), dtype=bool)
    some = empty.copy()
    some[2:4, 2:4, 2:4] = True
    nothing = detect_lesions(empty, empty, (1, 1, 1))
    assert all(v == 0 for v in nothing.values())
    missed = detect_lesions(empty, some, (1, 1, 1))
    assert missed["lesions"] == 1 and missed["detected"] == 0 and missed["false_positives"] == 0
    spurious = detect_lesions(some, empty, (1, 1, 1))
    assert spurious["lesions"] == 0 and spurious["false_positives"] == 1 == spurious["predicted_lesions"]
