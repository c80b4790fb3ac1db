"""labelfree.apps.nnunet.normalization and .dataset: HU <-> nnU-Net's CT normalisation, array axes (no nnU-Net needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from labelfree.apps.nnunet.dataset import nnunet_dataset_json
from labelfree.apps.nnunet.normalization import CTWindow, NnunetSetupError, superior_axis, widen_ct_window
from tumor_synthesis.organs import get_organ_profile


def _plans(scheme="CTNormalization"):
    return {"configurations": {"3d_fullres": {"normalization_schemes": [scheme]}},
            "foreground_intensity_properties_per_channel": {"0": {"mean": 100.0, "std": 20.0, "percentile_00_5": 30.0,
                                                                  "percentile_99_5": 180.0}}}


def test_ct_window_round_trip_matches_nnunet_formula():
    window = CTWindow.from_plans(_plans(), "3d_fullres")
    hu = np.array([-500.0, 30.0, 77.5, 100.0, 180.0, 900.0], dtype=np.float32)
    # nnU-Net's CTNormalization: clip to the percentiles, subtract the mean, divide by the std.
    expected = (np.clip(hu, 30.0, 180.0) - 100.0) / 20.0
    np.testing.assert_allclose(window.from_hu(hu), expected, rtol=1e-6)
    np.testing.assert_allclose(window.to_hu(window.from_hu(hu)), np.clip(hu, 30.0, 180.0), rtol=1e-6)


def test_ct_window_refuses_other_normalisations():
    with pytest.raises(NnunetSetupError, match="ZScoreNormalization"):
        CTWindow.from_plans(_plans("ZScoreNormalization"), "3d_fullres")
    with pytest.raises(NnunetSetupError, match="2d"):
        CTWindow.from_plans(_plans(), "2d")


def test_superior_axis_from_sitk_and_nibabel_geometry():
    axial = {"sitk_stuff": {"direction": (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)}}
    # SimpleITK arrays are (z, y, x): the axial slice index is reader axis 0.
    assert superior_axis(axial, [0, 1, 2]) == 0
    assert superior_axis(axial, [1, 2, 0]) == 2
    # A coronal acquisition: voxel axis 1 runs along world z -> reader axis 1.
    coronal = np.array([[-1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, -1.0, 0, 0], [0, 0, 0, 1]])
    assert superior_axis({"nibabel_stuff": {"original_affine": coronal}}, [0, 1, 2]) == 1
    with pytest.raises(NnunetSetupError, match="geometry"):
        superior_axis({"spacing": [1, 1, 1]}, [0, 1, 2])


def test_widen_ct_window_only_lowers(tmp_path):
    path = tmp_path / "nnUNetPlans.json"
    path.write_text(json.dumps(_plans()))
    assert widen_ct_window(path, -60)["new_lower"] == -60
    assert json.loads(path.read_text())["foreground_intensity_properties_per_channel"]["0"]["percentile_00_5"] == -60
    assert widen_ct_window(path, 10)["new_lower"] == -60


def test_dataset_json_follows_nnunet_conventions():
    content = nnunet_dataset_json(get_organ_profile("multi"), 4, "Dataset001_X", synthesis={"organ": "multi"})
    assert content["labels"] == {"background": 0, "liver": 1, "liver_tumor": 2, "pancreas": 3, "pancreas_tumor": 4,
                                 "kidney": 5, "kidney_tumor": 6}
    assert content["channel_names"] == {"0": "CT"} and content["numTraining"] == 4
    assert content["labelfree_synthesis"] == {"organ": "multi"}
