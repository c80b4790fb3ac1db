"""labelfree.cli.score: re-scoring a prediction folder reproduces validation.py's metrics to the last digit."""

from __future__ import annotations

import json
import subprocess
import sys

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


def _validation_run(tmp_path, *flags):
    log_dir = tmp_path / "runs" / "synt.unet0"
    _checkpoint(log_dir / "model.pt")
    datalist = _datalist(tmp_path, kinds=("ras", "lps", "anisotropic"))
    argv = ["--model=unet", "--val_overlap=0.25", "--val_dir", str(tmp_path / "data"), "--json_dir", str(datalist),
            "--log_dir", str(log_dir), "--save_dir", str(tmp_path / "outs"), "--workers", "0", "--device", "cpu",
            *flags]
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


def test_validation_records_the_original_conventions_and_rescoring_keeps_them(tmp_path):
    datalist, out_dir = _validation_run(tmp_path, "--organ_region", "organ_only", "--empty_mask_score", "nan")
    summary = json.loads((out_dir / "summary.json").read_text())
    assert (summary["settings"]["organ_region"], summary["settings"]["empty_mask_score"]) == ("organ_only", "nan")
    rescored = tmp_path / "rescored"
    assert score.main(["--pred_dir", str(out_dir / "pred"), "--json_dir", str(datalist), "--val_dir",
                       str(tmp_path / "data"), "--out", str(rescored), "--no_report"]) == 0
    assert (rescored / "metrics.csv").read_bytes() == (out_dir / "metrics.csv").read_bytes()
    rows = [line.split(",") for line in (rescored / "metrics.csv").read_text().splitlines()[1:]]
    for name, pred_file in ((r[0], out_dir / "pred" / f"{r[0]}.nii.gz") for r in rows):
        pred = np.asarray(nib.load(pred_file).dataobj)
        label = np.asarray(nib.load(tmp_path / "data" / "label" / f"{name}.nii.gz").dataobj)
        organ_dice = 2.0 * np.sum((pred == 1) & (label == 1)) / (np.sum(pred == 1) + np.sum(label == 1))
        assert float(next(r for r in rows if r[0] == name)[1]) == pytest.approx(organ_dice, abs=1e-12)


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
    # A pool forced on (these cases are far below its break-even): the same rows from spawned processes.
    assert score_cases(cases, out / "pred", LIVER_PAIRS, workers=2, progress=False, pool_min_voxels=0) == rows


def test_a_missing_prediction_is_named(tmp_path, capsys):
    datalist, out_dir = _validation_run(tmp_path)
    (out_dir / "pred" / "liver_1.nii.gz").unlink()
    code = score.main(["--pred_dir", str(out_dir / "pred"), "--json_dir", str(datalist),
                       "--val_dir", str(tmp_path / "data"), "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "1 case(s)" in err and "liver_1" in err and "no prediction" in err
    assert not (tmp_path / "x").exists()


# --- grids, conventions and weight: cases written directly (no network) ------------------------


def _scored_folder(tmp_path, stored_as=None, affine=None, tumors=(True, False)):
    """A datalist of labelled cases ``c0, c1..`` and a ``pred/`` folder; ``stored_as`` re-stores every prediction."""
    from tests.helpers.scoring_cases import RAS_AFFINE, reference_and_prediction, save

    entries, arrays = [], []
    for i, with_tumors in enumerate(tumors):
        ref, pred = reference_and_prediction(tumors=with_tumors)
        image = save(tmp_path / "data" / "img" / f"c{i}.nii.gz", ref * 100, RAS_AFFINE)
        label = save(tmp_path / "data" / "label" / f"c{i}.nii.gz", ref, RAS_AFFINE)
        stored, stored_affine = stored_as(pred) if stored_as else (pred, RAS_AFFINE if affine is None else affine)
        save(tmp_path / "eval" / "pred" / f"c{i}.nii.gz", stored, stored_affine)
        entries.append({"image": image, "label": label})
        arrays.append((ref, pred))
    datalist = tmp_path / "data" / "list.json"
    datalist.write_text(json.dumps({"validation": entries}))
    return datalist, tmp_path / "eval" / "pred", arrays


def _score(datalist, pred_dir, *flags):
    return score.main(["--pred_dir", str(pred_dir), "--json_dir", str(datalist), "--no_report", *flags])


def test_a_folder_of_lps_saved_predictions_scores_as_the_ras_one(tmp_path, capsys):
    from tests.helpers.scoring_cases import as_lps, hand_dice

    ras_list, ras_pred, arrays = _scored_folder(tmp_path / "ras")
    lps_list, lps_pred, _ = _scored_folder(tmp_path / "lps", stored_as=as_lps)
    assert _score(ras_list, ras_pred) == 0
    assert _score(lps_list, lps_pred) == 0
    assert "2 prediction(s) saved in another axis order or orientation" in capsys.readouterr().out
    ras_rows = (ras_pred.parent / "metrics.csv").read_text().splitlines()
    assert (lps_pred.parent / "metrics.csv").read_text().splitlines() == ras_rows
    ref, pred = arrays[0]
    assert float(ras_rows[1].split(",")[3]) == pytest.approx(hand_dice(pred == 2, ref == 2), abs=1e-12)


def test_a_prediction_shifted_by_a_voxel_is_refused_naming_both_files(tmp_path, capsys):
    from tests.helpers.scoring_cases import RAS_AFFINE, shifted

    datalist, pred_dir, _ = _scored_folder(tmp_path, affine=shifted(RAS_AFFINE, (0, 1, 0)), tumors=(True,))
    assert _score(datalist, pred_dir) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: prediction ")
    assert str(pred_dir / "c0.nii.gz") in err and str(tmp_path / "data" / "label" / "c0.nii.gz") in err
    assert "origin shifted by (0, 0.9, 0) mm" in err
    assert not (pred_dir.parent / "metrics.csv").exists()


def test_the_original_conventions_by_flag_and_the_means_over_the_cases_with_a_score(tmp_path, capsys):
    from tests.helpers.scoring_cases import hand_dice

    datalist, pred_dir, arrays = _scored_folder(tmp_path)  # c1 has no tumor, in either
    assert _score(datalist, pred_dir, "--organ_region", "organ_only", "--empty_mask_score", "nan") == 0
    assert "means over the cases with a score, of 2: liver_dice 2, liver_nsd 2, tumor_dice 1, tumor_nsd 1" \
        in capsys.readouterr().out
    summary = json.loads((pred_dir.parent / "summary.json").read_text())
    organ = [hand_dice(pred == 1, ref == 1) for ref, pred in arrays]  # label 1 alone, as the original
    tumor = [hand_dice(pred == 2, ref == 2) for ref, pred in arrays]  # NaN for c1: 0 / 0
    assert np.isnan(tumor[1])
    assert summary["metrics"]["liver_dice"]["mean"] == pytest.approx(np.mean(organ), abs=1e-12)
    assert summary["metrics"]["tumor_dice"]["mean"] == pytest.approx(np.nanmean(tumor), abs=1e-12)
    assert (summary["metrics"]["tumor_dice"]["n"], summary["metrics"]["tumor_dice"]["n_nan"]) == (1, 1)
    assert summary["settings"]["organ_region"] == "organ_only" and summary["settings"]["empty_mask_score"] == "nan"
    # Re-scoring the folder takes the recorded conventions; the defaults give LiTS's organ and 1 for empty pairs.
    assert _score(datalist, pred_dir, "--out", str(tmp_path / "again")) == 0
    assert (tmp_path / "again" / "metrics.csv").read_bytes() == (pred_dir.parent / "metrics.csv").read_bytes()
    assert _score(datalist, pred_dir, "--out", str(tmp_path / "lits"), "--organ_region", "organ_and_tumor",
                  "--empty_mask_score", "one") == 0
    lits = json.loads((tmp_path / "lits" / "summary.json").read_text())["metrics"]
    assert lits["tumor_dice"]["mean"] == pytest.approx((tumor[0] + 1.0) / 2, abs=1e-12)
    assert lits["liver_dice"]["mean"] == pytest.approx(
        np.mean([hand_dice(pred > 0, ref > 0) for ref, pred in arrays]), abs=1e-12)


def test_scoring_imports_neither_torch_nor_monai(tmp_path):
    datalist, pred_dir, _ = _scored_folder(tmp_path)
    code = (
        "import sys\n"
        "from labelfree.cli import score\n"
        f"assert score.main(['--pred_dir', {str(pred_dir)!r}, '--json_dir', {str(datalist)!r}]) == 0\n"
        "print('heavy:', sorted(m for m in ('torch', 'monai') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "heavy: []" in done.stdout
    assert (pred_dir.parent / "report" / "index.html").is_file()  # the whole run, report included
