"""Tests of validation.py and evaluation.inference: geometry of predictions, scoring, CLI errors.

Geometry tests run the real path (MONAI infer pipeline -> sliding window -> Invertd) with a
deterministic stand-in network that thresholds the windowed image, on small NIfTI files in
RAS, LPS, anisotropic and oblique orientations. CLI tests use a real (untrained) UNet
checkpoint; the end-to-end test trains one epoch with main.py on phantom data.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from labelfree.cli import validate as validation
from labelfree.evaluation import report
from labelfree.evaluation.metrics import dice
from labelfree.evaluation.report import metric_columns
from tests.helpers.evaluation import (
    BLOCK,
    SHAPE,
    TRAINING_ARGS,
    WINDOW,
    ThresholdNet,
    affine_of as _affine,
    block_scan as _block_scan,
    evaluate_cases as _evaluate,
    save_volume as _save,
    write_checkpoint as _checkpoint,
    write_datalist as _datalist,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("kind", ["ras", "lps", "anisotropic", "oblique"])
def test_prediction_has_the_input_geometry_and_overlays_it(tmp_path, kind):
    case = _block_scan(tmp_path, kind)
    rows, out = _evaluate(tmp_path, [case], ThresholdNet())
    source = nib.load(case["image"])
    written = nib.load(out / "pred" / "case.nii.gz")
    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)
    np.testing.assert_array_equal(written.header.get_zooms(), source.header.get_zooms())
    assert written.get_data_dtype() == np.uint8
    pred = np.asarray(written.dataobj)
    block = np.zeros(SHAPE, bool)
    block[BLOCK] = True
    assert set(np.unique(pred)) == {0, 1}
    assert dice(pred == 1, block) > 0.85
    for axis in range(3):  # the voxel order is the file's, not flipped along any axis
        assert dice(pred == 1, np.flip(block, axis)) < 0.5
    assert rows[0]["liver_dice"] == pytest.approx(dice(pred == 1, block))
    assert rows[0]["tumor_dice"] == 1.0 and rows[0]["tumor_nsd"] == 1.0  # no tumor anywhere


def test_prediction_is_exact_when_no_resampling_is_needed(tmp_path):
    case = _block_scan(tmp_path, "ras")
    rows, out = _evaluate(tmp_path, [case], ThresholdNet(), space=(1.0, 1.0, 1.0))
    pred = np.asarray(nib.load(out / "pred" / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(pred, np.asarray(nib.load(case["label"]).dataobj))
    assert rows[0]["liver_dice"] == 1.0 and rows[0]["liver_nsd"] == 1.0


def test_a_model_that_never_predicts_tumor_scores_zero_on_tumor_cases(tmp_path):
    case = _block_scan(tmp_path, "lps")
    label = np.asarray(nib.load(case["label"]).dataobj).copy()
    label[12:16, 9:13, 6:9] = 2
    _save(Path(case["label"]), label, _affine("lps"))
    rows, out = _evaluate(tmp_path, [case], ThresholdNet(tumor_at=None), postprocess=True)
    row = rows[0]
    assert row["tumor_dice"] == 0.0 and row["tumor_nsd"] == 0.0
    assert row["lesions"] == 1 and row["detected"] == 0 and row["false_positives"] == 0
    assert row["liver_dice"] > 0.85


def test_postprocessing_drops_far_tumor_and_can_be_switched_off(tmp_path):
    image = np.full((70, 30, 30), -100, np.int16)
    image[5:25, 5:25, 5:25] = 150  # organ (windowed ~0.8)
    image[10:14, 10:14, 10:14] = 400  # tumor inside the organ (windowed 1.0)
    image[60:65, 12:17, 12:17] = 400  # bright blob 36 mm away from the organ
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    case = {"name": "pp", "image": _save(tmp_path / "pp.nii.gz", image, affine)}
    net = ThresholdNet(tumor_at=0.95)
    _, out = _evaluate(tmp_path / "raw", [case], net, space=(1.0, 1.0, 1.0), postprocess=False)
    raw = np.asarray(nib.load(out / "pred" / "pp.nii.gz").dataobj)
    assert (raw[60:65, 12:17, 12:17] == 2).all()
    _, out = _evaluate(tmp_path / "post", [case], net, space=(1.0, 1.0, 1.0), postprocess=True)
    post = np.asarray(nib.load(out / "pred" / "pp.nii.gz").dataobj)
    assert not post[40:].any()  # the far blob is not connected to the organ and is > 30 mm away
    assert (post[10:14, 10:14, 10:14] == 2).all()
    np.testing.assert_array_equal(post[:40], raw[:40])


def test_summary_is_nan_aware_and_pools_lesions_over_cases():
    columns = metric_columns("liver", "tumor")
    base = {c: 0 for c in columns[5:]}
    rows = [
        {**base, "name": "a", "liver_dice": 0.9, "liver_nsd": 0.8, "tumor_dice": 0.5, "tumor_nsd": float("nan"),
         "lesions": 3, "detected": 2, "false_positives": 1, "lesions_r0_5": 2, "detected_r0_5": 1,
         "lesions_r10_15": 1, "detected_r10_15": 1},
        {**base, "name": "b", "liver_dice": 0.7, "liver_nsd": 0.6, "tumor_dice": 0.0, "tumor_nsd": 0.2,
         "lesions": 1, "detected": 0, "false_positives": 4, "lesions_r0_5": 1},
    ]
    summary = report.summarize(rows, columns[1:5])
    assert summary["metrics"]["liver_dice"]["mean"] == pytest.approx(0.8)
    assert summary["metrics"]["tumor_nsd"] == {"mean": 0.2, "std": 0.0, "median": 0.2, "n": 1, "n_nan": 1}
    detection = summary["lesion_detection"]
    assert detection["sensitivity"] == pytest.approx(2 / 4)  # pooled over cases, not a mean of ratios
    assert detection["false_positives_per_case"] == pytest.approx(2.5)
    assert detection["by_radius_mm"]["r0_5"] == {"lesions": 3, "detected": 1, "sensitivity": pytest.approx(1 / 3)}
    assert detection["by_radius_mm"]["r20_inf"]["sensitivity"] is None  # no lesion of that size
    json.dumps(summary, allow_nan=False)  # valid JSON: no NaN anywhere
    table = report.format_table(rows, summary, columns[1:5])
    assert "0.8000" in table and "2/4" in table


def test_datalist_entries_without_a_label_are_segmented_but_not_scored(tmp_path):
    case = _block_scan(tmp_path, "ras", name="scored")
    unlabelled = _block_scan(tmp_path, "lps", name="unscored")
    datalist = tmp_path / "list.json"
    datalist.write_text(json.dumps({"validation": [
        {"image": case["image"], "label": case["label"]}, {"image": unlabelled["image"]},
        {"image": str(Path(unlabelled["image"]).with_name("other.nii.gz")), "label": None},
    ]}))
    Path(unlabelled["image"]).with_name("other.nii.gz").write_bytes(Path(unlabelled["image"]).read_bytes())
    args = validation.get_args_parser().parse_args(["--json_dir", str(datalist)])
    cases = validation.collect_cases(args)
    assert [("label" in c) for c in cases] == [True, False, False]
    assert [c["name"] for c in cases] == ["scored", "unscored", "other"]
    rows, out = _evaluate(tmp_path, cases, ThresholdNet())
    assert [r["name"] for r in rows] == ["scored"]
    assert sorted(p.name for p in (out / "pred").iterdir()) == ["other.nii.gz", "scored.nii.gz", "unscored.nii.gz"]


# --- the command line ---------------------------------------------------------------------

#: Weights of some other architecture (layer names a UNet does not have).
OTHER_WEIGHTS = {"swinViT.patch_embed.proj.weight": torch.zeros(12, 1, 2, 2, 2), "out.conv.conv.bias": torch.zeros(3)}


def test_cli_writes_predictions_metrics_and_summary_with_checkpoint_settings(tmp_path, capsys):
    log_dir = tmp_path / "runs" / "synt.unet0"
    _checkpoint(log_dir / "model.pt")
    datalist = _datalist(tmp_path)
    argv = ["--model=unet", "--val_overlap=0.25", "--val_dir", str(tmp_path / "data"), "--json_dir", str(datalist),
            "--log_dir", str(log_dir), "--save_dir", str(tmp_path / "outs"), "--workers", "0", "--device", "cpu"]
    assert validation.cli(argv) == 0
    out_dir = tmp_path / "outs" / "synt.unet0" / "0.25"
    for i in range(2):
        source = nib.load(tmp_path / "data" / "img" / f"liver_{i}.nii.gz")
        written = nib.load(out_dir / "pred" / f"liver_{i}.nii.gz")
        assert written.shape == source.shape
        np.testing.assert_array_equal(written.affine, source.affine)
    with open(out_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == metric_columns("liver", "tumor")
    assert list(rows[0])[:5] == ["name", "liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"]
    assert [r["name"] for r in rows] == ["liver_0", "liver_1"]
    for r in rows:
        assert 0.0 <= float(r["liver_dice"]) <= 1.0 and 0.0 <= float(r["liver_nsd"]) <= 1.0
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["cases"] == 2 and summary["metrics"]["liver_dice"]["n"] == 2
    assert summary["metrics"]["liver_dice"]["mean"] == pytest.approx(np.mean([float(r["liver_dice"]) for r in rows]))
    # Preprocessing came from the checkpoint's saved training arguments, the window from the organ.
    assert summary["settings"]["roi"] == [32, 32, 32] and summary["settings"]["space_mm"] == [2.0, 2.0, 2.0]
    assert (summary["settings"]["a_min"], summary["settings"]["a_max"]) == WINDOW
    printed = capsys.readouterr().out
    assert "liver_dice" in printed and "mean" in printed


def test_cli_inference_only_on_a_folder_of_scans(tmp_path):
    _block_scan(tmp_path / "scans", "oblique", name="a")
    _block_scan(tmp_path / "scans", "anisotropic", name="b")
    ckpt = _checkpoint(tmp_path / "ckpt" / "model.pt")
    argv = ["--images", str(tmp_path / "scans" / "img"), "--checkpoint", str(ckpt), "--save_dir", str(tmp_path / "outs"),
            "--workers", "0", "--device", "cpu"]
    assert validation.cli(argv) == 0
    out_dir = tmp_path / "outs" / "ckpt" / "0.5"
    assert sorted(p.name for p in (out_dir / "pred").iterdir()) == ["a.nii.gz", "b.nii.gz"]
    assert not (out_dir / "metrics.csv").exists() and not (out_dir / "summary.json").exists()
    np.testing.assert_array_equal(
        nib.load(out_dir / "pred" / "a.nii.gz").affine, nib.load(tmp_path / "scans" / "img" / "a.nii.gz").affine
    )


def test_cli_lists_every_missing_file_before_loading_anything(tmp_path, capsys):
    datalist = tmp_path / "fold.json"
    datalist.write_text(json.dumps({"validation": [{"image": "img/x.nii.gz", "label": "label/x.nii.gz"},
                                                    {"image": "img/y.nii.gz", "label": "label/y.nii.gz"}]}))
    argv = ["--val_dir", str(tmp_path), "--json_dir", str(datalist), "--log_dir", str(tmp_path / "no_run")]
    assert validation.cli(argv) == 2
    err = capsys.readouterr().err
    for name in ("img/x.nii.gz", "label/x.nii.gz", "img/y.nii.gz", "label/y.nii.gz"):
        assert name in err
    assert "4 problem(s)" in err


def test_cli_reports_a_missing_or_corrupt_checkpoint(tmp_path, capsys):
    datalist = _datalist(tmp_path, kinds=("ras",))
    base = ["--val_dir", str(tmp_path / "data"), "--json_dir", str(datalist), "--save_dir", str(tmp_path / "outs")]
    assert validation.cli(base + ["--log_dir", str(tmp_path / "missing_run")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    corrupt = tmp_path / "bad" / "model.pt"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not a checkpoint" * 10)
    assert validation.cli(base + ["--checkpoint", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert str(corrupt) in err and "cannot be read" in err


ROI_32 = ["--roi_x", "32", "--roi_y", "32", "--roi_z", "32"]


@pytest.mark.parametrize(
    "flags, saved_args, weights, expected",
    [
        (["--num_classes", "4"], TRAINING_ARGS, None, "was saved with --num_classes 3 (this run: 4)"),
        (["--model", "unet"], {**TRAINING_ARGS, "model_name": "swin_unetrv2"}, OTHER_WEIGHTS,
         "was saved with --model swin_unetrv2 (this run: unet)"),
        (["--num_classes", "4", *ROI_32], None, None, "probably --num_classes"),
        (["--model", "unet", *ROI_32], None, OTHER_WEIGHTS, "probably --model"),
    ],
)
def test_cli_names_the_flag_that_does_not_match_the_checkpoint(tmp_path, capsys, flags, saved_args, weights, expected):
    datalist = _datalist(tmp_path, kinds=("ras",))
    ckpt = _checkpoint(tmp_path / "run" / "model.pt", saved_args, weights)
    argv = ["--val_dir", str(tmp_path / "data"), "--json_dir", str(datalist), "--checkpoint", str(ckpt),
            "--save_dir", str(tmp_path / "outs"), "--device", "cpu", *flags]
    assert validation.cli(argv) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {ckpt} " in err and expected in err  # the file and the flag, saved -> given
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "outs").exists()


def test_cli_rejects_a_label_whose_grid_differs_from_its_image(tmp_path, capsys):
    datalist = _datalist(tmp_path, kinds=("ras",))
    _save(tmp_path / "data" / "label" / "liver_0.nii.gz", np.zeros((10, 10, 10), np.uint8), np.eye(4))
    ckpt = _checkpoint(tmp_path / "run" / "model.pt")
    argv = ["--val_dir", str(tmp_path / "data"), "--json_dir", str(datalist), "--checkpoint", str(ckpt)]
    assert validation.cli(argv) == 2
    err = capsys.readouterr().err
    assert "shape mismatch: image (40, 34, 22) vs label (10, 10, 10)" in err and "liver_0.nii.gz" in err


# --- end to end: phantom data -> main.py one epoch -> the original validation command -----


@pytest.mark.slow
def test_phantom_train_one_epoch_then_the_original_validation_command(tmp_path):
    from labelfree.cli import train as train_cli
    from labelfree.phantom import make_phantom_dataset

    root = tmp_path / "phantom"
    make_phantom_dataset(root, n_healthy=2, n_tumor=2, n_chest_healthy=0, n_chest_nodule=0, spacing=(3.0, 3.0, 4.0),
                         orientation="LPS", previews=False, progress=False)
    datalist = root / "datafolds" / "healthy.json"
    log_dir = tmp_path / "runs" / "synt.no_pretrain.unet0"
    train_cli.main([
        "--model_name=unet", "--syn", "--max_epochs=1", "--val_every=1", "--save_checkpoint", "--batch_size=1",
        "--logdir", str(log_dir), "--train_dir", str(root), "--val_dir", str(root), "--json_dir", str(datalist),
        # small patches on a coarse grid: a few windows per case keep the run short on CPU
        "--roi_x", "32", "--roi_y", "32", "--roi_z", "32", "--space_x", "6", "--space_y", "6", "--space_z", "6",
        "--workers", "0", "--warmup_epochs", "1", "--device", "cpu",
    ])
    assert (log_dir / "model.pt").is_file()

    command = [sys.executable, "validation.py", "--model=unet", "--val_overlap=0.75", "--val_dir", str(root),
               "--json_dir", str(datalist), "--log_dir", str(log_dir), "--save_dir", str(tmp_path / "outs")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = tmp_path / "outs" / "synt.no_pretrain.unet0" / "0.75"
    validation_cases = json.loads(datalist.read_text())["validation"]
    assert len(validation_cases) == 2
    for entry in validation_cases:
        source = nib.load(root / entry["image"])
        written = nib.load(out_dir / "pred" / Path(entry["image"]).name)
        assert written.shape == source.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(written.affine, source.affine)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    with open(out_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert list(rows[0])[:5] == ["name", "liver_dice", "liver_nsd", "tumor_dice", "tumor_nsd"]
    assert all(int(r["lesions"]) >= 1 for r in rows)  # the phantom tumor cases have tumors
    summary = json.loads((out_dir / "summary.json").read_text())
    # validation.py took the preprocessing from the checkpoint's saved training arguments
    assert summary["settings"]["roi"] == [32, 32, 32] and summary["settings"]["space_mm"] == [6.0, 6.0, 6.0]
    assert summary["metrics"]["tumor_dice"]["n"] == 2
    assert "liver_dice" in result.stdout


@pytest.mark.slow
def test_a_prediction_that_cannot_be_written_is_one_line_and_leaves_no_partial_file(tmp_path):
    from tests.helpers.file_limits import run_with_file_size_limit

    # a: 8^3 voxels, its prediction ~0.1 kB; b: 64 x 64 x 48 voxels, its prediction > 0.9 kB even if all 0.
    for name, shape in (("a", (8, 8, 8)), ("b", (64, 64, 48))):
        _save(tmp_path / "scans" / f"{name}.nii.gz", np.full(shape, -100, np.int16), np.eye(4))
    ckpt = _checkpoint(tmp_path / "run" / "model.pt")
    result = run_with_file_size_limit(
        ["validation.py", "--images", str(tmp_path / "scans"), "--checkpoint", str(ckpt), "--save_dir",
         str(tmp_path / "outs"), "--workers", "0", "--device", "cpu", "--no_report"], n_bytes=512)
    pred_dir = tmp_path / "outs" / "run" / "0.5" / "pred"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert errors == [f"error: cannot write {pred_dir / 'b.nii.gz'}: File too large"]
    assert sorted(p.name for p in pred_dir.iterdir()) == ["a.nii.gz"]  # no partial b, no temporary file
    assert nib.load(pred_dir / "a.nii.gz").get_fdata().shape == (8, 8, 8)  # the earlier prediction is whole


def test_a_save_dir_that_cannot_be_created_is_refused_before_any_scan_is_read(tmp_path, capsys):
    (tmp_path / "outs").write_text("a file")
    datalist = tmp_path / "fold.json"  # its scans do not exist: the folder is checked first
    datalist.write_text(json.dumps({"validation": [{"image": "img/x.nii.gz", "label": "label/x.nii.gz"}]}))
    argv = ["--val_dir", str(tmp_path), "--json_dir", str(datalist), "--checkpoint", str(tmp_path / "run" / "model.pt"),
            "--save_dir", str(tmp_path / "outs")]
    assert validation.cli(argv) == 2
    pred = tmp_path / "outs" / "run" / "0.5" / "pred"
    assert capsys.readouterr().err == (f"error: --save_dir {pred}: cannot create folder: its parent "
                                       f"{tmp_path / 'outs'} is a file\n")
