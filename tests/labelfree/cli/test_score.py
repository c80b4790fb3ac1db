"""labelfree.cli.score: re-scoring a prediction folder reproduces validation.py's metrics to the last digit."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from labelfree.cli import score
from labelfree.cli import validate as validation
from labelfree.evaluation.scoring import score_cases, score_label_pairs, voxel_spacing

from tests.helpers.evaluation import (
    LIVER_PAIRS,
    ThresholdNet,
    block_scan as _block_scan,
    evaluate_cases as _evaluate,
    write_checkpoint as _checkpoint,
    write_datalist as _datalist,
)


def _validation_run(tmp_path):
    log_dir = tmp_path / "runs" / "synt.unet0"
    _checkpoint(log_dir / "model.pt")
    datalist = _datalist(tmp_path, kinds=("ras", "lps", "anisotropic"))
    argv = ["--model=unet", "--val_overlap=0.25", "--val_dir", str(tmp_path / "data"), "--json_dir", str(datalist),
            "--log_dir", str(log_dir), "--save_dir", str(tmp_path / "outs"), "--workers", "0", "--device", "cpu"]
    assert validation.cli(argv) == 0
    return datalist, tmp_path / "outs" / "synt.unet0" / "0.25"


@pytest.mark.parametrize("workers", [1, 2])
def test_rescoring_a_prediction_folder_reproduces_validation_exactly(tmp_path, workers):
    datalist, out_dir = _validation_run(tmp_path)
    rescored = tmp_path / f"rescored_{workers}"
    assert score.main(["--pred_dir", str(out_dir / "pred"), "--json_dir", str(datalist),
                       "--val_dir", str(tmp_path / "data"), "--workers", str(workers), "--out", str(rescored)]) == 0
    assert (rescored / "metrics.csv").read_bytes() == (out_dir / "metrics.csv").read_bytes()
    assert json.loads((rescored / "summary.json").read_text()) == json.loads((out_dir / "summary.json").read_text())


def test_scoring_from_files_equals_scoring_the_arrays(tmp_path):
    """Non-trivial predictions (a thresholding network): the file-based rows equal the in-memory computation."""
    cases = []
    for kind in ("ras", "oblique"):
        case = _block_scan(tmp_path, kind, name=f"c_{kind}")
        label = np.asarray(nib.load(case["label"]).dataobj).copy()
        label[12:16, 9:13, 6:9] = 2
        nib.save(nib.Nifti1Image(label, nib.load(case["label"]).affine), case["label"])
        cases.append(case)
    rows, out = _evaluate(tmp_path, cases, ThresholdNet(), postprocess=True)
    for case, row in zip(cases, rows):
        pred = np.asarray(nib.load(out / "pred" / f"{case['name']}.nii.gz").dataobj)
        label_nii = nib.load(case["label"])
        expected = score_label_pairs(pred, np.asarray(label_nii.dataobj), voxel_spacing(label_nii.affine), LIVER_PAIRS)
        assert row == {"name": case["name"], **expected}
        assert 0.0 < row["liver_dice"] < 1.0
    assert score_cases(cases, out / "pred", LIVER_PAIRS, workers=2, progress=False) == rows


def test_a_missing_prediction_is_named(tmp_path, capsys):
    datalist, out_dir = _validation_run(tmp_path)
    (out_dir / "pred" / "liver_1.nii.gz").unlink()
    code = score.main(["--pred_dir", str(out_dir / "pred"), "--json_dir", str(datalist),
                       "--val_dir", str(tmp_path / "data"), "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "1 case(s)" in err and "liver_1" in err and "no prediction" in err
    assert not (tmp_path / "x").exists()
