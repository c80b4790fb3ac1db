"""labelfree.evaluation.scoring: predictions scored on their label's grid, and the metric conventions.

Every expected number is computed independently here (Dice written out on the arrays,
NSD by DeepMind's surface-distance, lesions by scipy's component labelling).
"""

from __future__ import annotations

import math
import re

import nibabel as nib
import numpy as np
import pytest
import surface_distance
from scipy import ndimage

from labelfree.evaluation.scoring import (
    POOL_MIN_VOXELS,
    check_prediction_grids,
    check_written_prediction,
    pool_pays,
    resolve_conventions,
    score_files,
    score_prediction,
    scoring_processes,
)
from labelfree.io.orientation import GridMismatch
from labelfree.io.readers import read_geometry, voxel_spacing

from tests.helpers.scoring_cases import (
    RAS_AFFINE,
    as_lps,
    as_permuted,
    hand_dice,
    reference_and_prediction,
    save,
    shifted,
)

LIVER_PAIRS = (("liver", 1, "tumor", 2),)
#: The voxel size as a NIfTI file stores it (float32: 0.8 mm is 0.800000011920929 mm there).
SPACING = voxel_spacing(RAS_AFFINE.astype(np.float32))


def _package_nsd(pred: np.ndarray, ref: np.ndarray, spacing, tolerance_mm: float = 2.0) -> float:
    distances = surface_distance.compute_surface_distances(ref.astype(bool), pred.astype(bool), spacing)
    return surface_distance.compute_surface_dice_at_tolerance(distances, tolerance_mm)


@pytest.fixture()
def case(tmp_path):
    ref, pred = reference_and_prediction()
    return {"ref": ref, "pred": pred, "label": save(tmp_path / "label.nii.gz", ref, RAS_AFFINE),
            "ras": save(tmp_path / "pred_ras.nii.gz", pred, RAS_AFFINE), "dir": tmp_path}


# --- the grid of a prediction ---------------------------------------------------------------


@pytest.mark.parametrize("stored_as", [as_lps, as_permuted])
def test_a_prediction_saved_in_another_orientation_scores_exactly_as_the_ras_one(case, stored_as):
    stored, affine = stored_as(case["pred"])
    other = save(case["dir"] / "pred_other.nii.gz", stored, affine)
    ras_scores = score_files(case["ras"], case["label"], LIVER_PAIRS)
    assert score_files(other, case["label"], LIVER_PAIRS) == ras_scores
    # Against the arrays, by hand: the organ is labels 1 + 2, the tumor label 2.
    ref, pred = case["ref"], case["pred"]
    assert ras_scores["liver_dice"] == pytest.approx(hand_dice(pred > 0, ref > 0), abs=1e-12)
    assert ras_scores["tumor_dice"] == pytest.approx(hand_dice(pred == 2, ref == 2), abs=1e-12)
    assert ras_scores["tumor_nsd"] == pytest.approx(_package_nsd(pred == 2, ref == 2, SPACING), abs=1e-12)
    ref_lesions, n_ref = ndimage.label(ref == 2, np.ones((3, 3, 3)))
    assert (ras_scores["lesions"], ras_scores["detected"]) == (n_ref, len(set(np.unique(ref_lesions[pred == 2])) - {0}))
    assert (n_ref, ras_scores["detected"], ras_scores["false_positives"]) == (4, 3, 1)
    if stored.shape == ref.shape:  # the LPS file: scored as it lies, the tumors would not overlap
        assert hand_dice(stored == 2, ref == 2) < ras_scores["tumor_dice"] / 2


def test_a_prediction_shifted_by_one_voxel_is_refused_naming_both_files(case):
    shifted_pred = save(case["dir"] / "pred_shifted.nii.gz", case["pred"], shifted(RAS_AFFINE, (1, 0, 0)))
    with pytest.raises(GridMismatch) as error:
        score_files(shifted_pred, case["label"], LIVER_PAIRS)
    message = str(error.value)
    assert shifted_pred in message and case["label"] in message
    assert "origin shifted by (0.8, 0, 0) mm" in message and "(1, 0, 0) voxel" in message
    assert "\n" not in message


@pytest.mark.parametrize("change, expected", [
    (lambda a: np.diag([0.8, 0.9, 2.5, 1.0]) @ np.linalg.inv(np.diag([0.8, 0.9, 2.0, 1.0])) @ a, "voxel size"),
    (lambda a: a, "shape (20, 18, 11) vs (20, 18, 12)"),
])
def test_another_voxel_size_or_shape_is_refused(case, change, expected):
    pred = case["pred"][:, :, :11] if "shape" in expected else case["pred"]
    path = save(case["dir"] / "pred_bad.nii.gz", pred, change(RAS_AFFINE))
    with pytest.raises(GridMismatch, match=re.escape(expected)):
        score_files(path, case["label"], LIVER_PAIRS)


def test_the_header_check_lists_every_bad_prediction_and_the_reoriented_ones(case):
    lps = save(case["dir"] / "pred_lps.nii.gz", *as_lps(case["pred"]))
    moved = save(case["dir"] / "pred_moved.nii.gz", case["pred"], shifted(RAS_AFFINE, (0, 0, -1)))
    assert check_prediction_grids([(case["ras"], case["label"]), (lps, case["label"])]) == [1]
    with pytest.raises(GridMismatch) as error:
        check_prediction_grids([(lps, case["label"]), (moved, case["label"]), (moved, case["label"])])
    assert str(error.value).startswith("2 predictions are off their label's grid")
    assert str(error.value).count(moved) == 2 and lps not in str(error.value)


def test_a_written_prediction_is_read_back_and_compared_with_its_image(case):
    image = read_geometry(case["label"])
    check_written_prediction(case["ras"], image, case["label"])  # same grid: nothing to say
    # A header that places the voxels elsewhere (as one copied from another scan would).
    bad = nib.Nifti1Image(case["pred"], shifted(RAS_AFFINE, (2, 0, 0)))
    path = str(case["dir"] / "pred_written.nii.gz")
    nib.save(bad, path)
    with pytest.raises(GridMismatch, match="as written is not on the voxel grid of its image") as error:
        check_written_prediction(path, image, "scan.nii.gz")
    assert path in str(error.value) and "scan.nii.gz" in str(error.value)


# --- the conventions --------------------------------------------------------------------------


def test_organ_only_scores_label_one_alone_as_the_original():
    ref, pred = reference_and_prediction()
    both = score_prediction(pred, ref, SPACING, 1, 2)
    alone = score_prediction(pred, ref, SPACING, 1, 2, organ_region="organ_only")
    assert both["liver_dice"] == pytest.approx(hand_dice(pred > 0, ref > 0), abs=1e-12)
    assert alone["liver_dice"] == pytest.approx(hand_dice(pred == 1, ref == 1), abs=1e-12)
    assert alone["liver_dice"] != both["liver_dice"]
    assert alone["liver_nsd"] == pytest.approx(_package_nsd(pred == 1, ref == 1, SPACING), abs=1e-12)
    assert both["liver_nsd"] == pytest.approx(_package_nsd(pred > 0, ref > 0, SPACING), abs=1e-12)
    # The tumor columns and the lesion counts do not depend on it.
    assert {k: v for k, v in alone.items() if not k.startswith("liver")} == \
        {k: v for k, v in both.items() if not k.startswith("liver")}
    with pytest.raises(ValueError, match="organ_and_tumor, organ_only"):
        score_prediction(pred, ref, SPACING, 1, 2, organ_region="organ")


def test_empty_mask_score_nan_gives_nan_where_both_are_empty_and_nothing_else():
    ref, pred = reference_and_prediction(tumors=False)
    one = score_prediction(pred, ref, SPACING, 1, 2)
    nan = score_prediction(pred, ref, SPACING, 1, 2, empty_mask_score="nan")
    assert (one["tumor_dice"], one["tumor_nsd"]) == (1.0, 1.0)
    assert math.isnan(nan["tumor_dice"]) and math.isnan(nan["tumor_nsd"])
    assert math.isnan(hand_dice(pred == 2, ref == 2))  # 0 / 0, as the original's formula
    assert nan["liver_dice"] == one["liver_dice"] == pytest.approx(hand_dice(pred > 0, ref > 0), abs=1e-12)
    # One mask empty: 0 under both conventions (a miss is a miss).
    missed = pred.copy()
    ref_with_tumor = ref.copy()
    ref_with_tumor[5:7, 5:7, 3:5] = 2
    assert score_prediction(missed, ref_with_tumor, SPACING, 1, 2, empty_mask_score="nan")["tumor_dice"] == 0.0


def test_conventions_come_from_the_flag_then_the_record_then_the_default():
    recorded = {"organ_region": "organ_only", "empty_mask_score": "nan"}
    assert resolve_conventions(None, None) == {"organ_region": "organ_and_tumor", "empty_mask_score": "one"}
    assert resolve_conventions(None, None, recorded) == recorded
    assert resolve_conventions("organ_and_tumor", "one", recorded) == {"organ_region": "organ_and_tumor",
                                                                       "empty_mask_score": "one"}


# --- the worker pool --------------------------------------------------------------------------


def test_the_pool_is_used_only_above_the_break_even(case):
    assert not pool_pays(8, POOL_MIN_VOXELS - 1, workers=2)
    assert pool_pays(8, POOL_MIN_VOXELS, workers=2)
    assert not pool_pays(1, 10 * POOL_MIN_VOXELS, workers=2) and not pool_pays(8, 10 * POOL_MIN_VOXELS, workers=1)
    cases = [{"name": "a", "label": case["label"]}, {"name": "b", "label": case["label"]}, {"name": "c"}]
    assert scoring_processes(cases, workers=4) == 1  # two tiny labels: one process
    assert scoring_processes(cases, workers=4, min_voxels=0) == 2  # never more than the labelled cases
