"""Bad input never crashes a run halfway nor trains on garbage (labelfree.data.preflight, .interrupt, .step_checks).

Each row of the table of issue 14, for main.py and validation.py: one clear message naming the
file, before the first training step or prediction, and no checkpoint or prediction written.
Tiny volumes (32 x 32 x 24 voxels of 3 mm, 32 x 32 x 16 patches) and 1-2 steps per run; the
signals are real (os.kill), sent by the fault drill TUMORSEG_SIGNAL_AT_STEP at a given step.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from labelfree.cli import check_data
from labelfree.cli import validate
from labelfree.cli import train as train_cli
from labelfree.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from labelfree.io.atomic import remove_stale_temp_files

REPO = Path(__file__).resolve().parents[3]
SHAPE = (32, 32, 24)
SPACING = (3.0, 3.0, 3.0)
SMALL = ["--roi_x", "32", "--roi_y", "32", "--roi_z", "16", "--space_x", "3", "--space_y", "3", "--space_z", "3",
         "--workers", "0", "--warmup_epochs", "1", "--device", "cpu"]
#: What each planted bad case is, and the words its message must hold.
BAD_ROWS = {
    "nan": "image holds 20 NaN or infinite voxel(s)",
    "truncated": "file unreadable",
    "value7": "unexpected label values [7]",
    "shape": "shape mismatch: image (32, 32, 24) vs label (32, 32, 12)",
    "affine": "affine mismatch: image and label differ by up to 30 mm",
    "empty": "organ empty: no voxel of label 1",
    "flat": "image is not 3D: shape (32, 32)",
}


# ------------------------------------------------------------------------------------------- data
def affine(shift_mm=0.0):
    a = np.diag(list(SPACING) + [1.0])
    a[0, 3] = shift_mm
    return a


def save(path, data, aff=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine() if aff is None else aff), str(path))
    return path


def good_case(seed, tumor=False):
    """A torso (40 HU) with a liver ellipsoid (110 HU, label 1) and optionally a tumor (label 2)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(s, dtype=float) for s in SHAPE], indexing="ij")
    image = np.full(SHAPE, -1000.0)
    image[((x - 16) / 15) ** 2 + ((y - 16) / 12) ** 2 < 1] = 40
    liver = ((x - 13) / 8) ** 2 + ((y - 16) / 7) ** 2 + ((z - 12) / 7) ** 2 < 1
    image[liver] = 110
    label = liver.astype(np.uint8)
    if tumor:
        lesion = ((x - 13) / 3) ** 2 + ((y - 16) / 3) ** 2 + ((z - 12) / 3) ** 2 < 1
        image[lesion], label[lesion] = 30, 2
    return (image + rng.normal(0, 8, SHAPE)).astype(np.int16), label


def write_case(root, name, image, label, image_affine=None, label_affine=None):
    save(root / "img" / f"{name}.nii.gz", image, image_affine)
    save(root / "label" / f"{name}.nii.gz", label, label_affine)
    return {"image": f"img/{name}.nii.gz", "label": f"label/{name}.nii.gz"}


def bad_case(root, kind, seed=50):
    """One case with the problem ``kind`` of :data:`BAD_ROWS`."""
    image, label = good_case(seed)
    if kind == "nan":
        image = image.astype(np.float32)
        image[5, 5, :16] = np.nan  # 16 NaN
        image[6, 6, :4] = np.inf  # 4 inf
    elif kind == "value7":
        label[0, 0, 0] = 7
    elif kind == "shape":
        label = label[..., :12]
    elif kind == "empty":
        label[:] = 0
    elif kind == "flat":
        image, label = image[..., 12], label[..., 12]
    entry = write_case(root, kind, image, label, label_affine=affine(30.0) if kind == "affine" else None)
    if kind == "truncated":  # header readable, data cut
        path = root / entry["image"]
        blob = path.read_bytes()
        path.write_bytes(blob[: len(blob) // 2])
    return entry


def file_of(root, entry, kind):
    """The file that the message of ``kind`` must name."""
    return str(root / (entry["image"] if kind in ("nan", "truncated", "flat") else entry["label"]))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """2 good training cases, 1 good validation case, and one case of every bad kind in each split."""
    root = tmp_path_factory.mktemp("preflight")
    train = [write_case(root, f"train{i}", *good_case(i)) for i in range(2)]
    val = [write_case(root, "val0", *good_case(10, tumor=True))]
    bad = {kind: bad_case(root, kind) for kind in BAD_ROWS}
    lists = {
        "good.json": {"training": train, "validation": val},
        "train_only.json": {"training": train, "validation": []},
        "bad_train.json": {"training": train + list(bad.values()), "validation": []},
        "bad_val.json": {"training": train, "validation": val + list(bad.values())},
        "all_bad.json": {"training": [bad["nan"], bad["value7"]], "validation": val},
    }
    for name, data in lists.items():
        (root / name).write_text(json.dumps(data))
    return root


def bad_entries(root):
    data = json.loads((root / "bad_train.json").read_text())
    return {Path(e["image"]).name.split(".")[0]: e for e in data["training"][2:]}


def train_flags(root, datalist="good.json"):
    return ["--json_dir", str(root / datalist), "--train_dir", str(root), "--val_dir", str(root), *SMALL]


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        train_cli.main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out + captured.err


def unet_checkpoint(path, **args):
    from labelfree.networks import build_model

    torch.manual_seed(0)
    weights = build_model("unet", out_channels=3, roi_size=(32, 32, 16)).state_dict()
    saved = {"model_name": "unet", "swin_type": "tiny", "num_classes": 3, "out_channels": 3, "organ": "liver",
             "space_x": 3.0, "space_y": 3.0, "space_z": 3.0, "roi_x": 32, "roi_y": 32, "roi_z": 16, **args}
    save_checkpoint(path, epoch=0, best_acc=0.0, global_step=1, state_dict=weights, optimizer={"state": {}},
                    scheduler=None, scaler={}, args=saved)
    return path


class RunsCode:
    """Unpickling this calls os.system: what a malicious "checkpoint" does."""

    def __reduce__(self):
        return (os.system, ("true",))


# ------------------------------------------------------------------------------------------- main.py
def test_main_lists_every_bad_case_with_its_file_before_training(root, tmp_path, capsys):
    logdir = tmp_path / "run"
    code, text = run_main([*train_flags(root, "bad_train.json"), "--logdir", str(logdir), "--save_checkpoint"],
                          capsys)
    assert code == 2 and "Traceback" not in text
    assert f"{len(BAD_ROWS)} of {len(BAD_ROWS) + 2} case(s) cannot be used" in text
    lines = text.splitlines()
    for kind, entry in bad_entries(root).items():
        line = next(line for line in lines if f"] {kind}: " in line)  # one line per problem, naming its case
        assert BAD_ROWS[kind] in line and file_of(root, entry, kind) in line, line
    assert not logdir.exists()  # nothing cached, trained or written


@pytest.mark.slow
def test_skip_bad_cases_trains_on_the_good_ones(root, tmp_path, capsys):
    logdir = tmp_path / "run"
    logdir.mkdir()
    stale = logdir / ".model_final.pt.abcd1234.tmp.pt"  # left by a SIGKILL during a checkpoint write
    stale.write_bytes(b"")
    train_cli.main([*train_flags(root, "bad_train.json"), "--logdir", str(logdir), "--save_checkpoint",
                    "--skip_bad_cases", "--max_epochs", "1", "--max_steps_per_epoch", "1", "--log_case_indices"])
    text = "".join(capsys.readouterr())
    for kind, entry in bad_entries(root).items():
        assert "warning: skipping training[" in text and f"] {kind}: " in text and file_of(root, entry, kind) in text
    assert f"{len(BAD_ROWS)} bad case(s) left out; 2 of {len(BAD_ROWS) + 2} training case(s) remain" in text
    assert "2 training cases" in text
    final = load_checkpoint(logdir / "model_final.pt")
    assert final["epoch"] == 0 and all(torch.isfinite(v).all() for v in final["state_dict"].values())
    trained_on = json.loads((logdir / "case_indices.jsonl").read_text().splitlines()[0])["cases_by_rank"][0]
    assert set(trained_on) <= {0, 1}  # positions in the list of the two good cases
    assert not stale.exists()


def test_skip_bad_cases_refuses_when_no_training_case_remains(root, capsys):
    code, text = run_main([*train_flags(root, "all_bad.json"), "--skip_bad_cases"], capsys)
    assert code == 2 and "no training case left after --skip_bad_cases: all 2 are bad" in text


@pytest.mark.parametrize("saved, expected", [
    ({"model_name": "swin_unetrv2"}, "was saved with --model_name swin_unetrv2 (this run: unet)"),
    ({"roi_x": 64}, "was saved with --roi_x 64 (this run: 32)"),
    ({"organ": "pancreas"}, "was saved with --organ pancreas (this run: liver)"),
    ({"num_classes": 7, "out_channels": 7}, "was saved with --num_classes 7 (this run: 3), --out_channels 7 (this run: 3)"),
])
def test_resume_from_a_checkpoint_of_other_flags_names_the_flag(root, tmp_path, capsys, saved, expected):
    logdir = tmp_path / "run"
    final = unet_checkpoint(logdir / "model_final.pt", **saved)
    code, text = run_main([*train_flags(root), "--logdir", str(logdir), "--save_checkpoint", "--resume"], capsys)
    assert code == 2
    error = next(line for line in text.splitlines() if line.startswith("error:"))
    assert f"--resume checkpoint {final} {expected}" in error and "Traceback" not in text
    assert [p.name for p in logdir.iterdir()] == ["model_final.pt"]  # no events file, nothing cached


def test_foreign_weights_without_flags_are_rejected_before_caching(root, tmp_path, capsys):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"swinViT.patch_embed.proj.weight": torch.zeros(12, 1, 2, 2, 2)}}, path)
    code, text = run_main([*train_flags(root), "--checkpoint", str(path), "--logdir", str(tmp_path / "run")], capsys)
    assert code == 2 and f"weights in {path} do not match the model" in text
    assert "unexpected: swinViT.patch_embed.proj.weight" in text and len(text.splitlines()) < 5
    assert not (tmp_path / "run").exists()


def test_corrupt_and_unsafe_checkpoints_fail_before_caching_for_both_entry_points(root, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02 not a checkpoint")
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"state_dict": {}, "hook": RunsCode()}, unsafe)
    logdir = tmp_path / "run"
    for path, words in ((corrupt, "cannot be read (truncated, corrupt, or not a PyTorch file)"),
                        (unsafe, "refused: it is not a plain weights file")):
        code, text = run_main([*train_flags(root), "--checkpoint", str(path), "--logdir", str(logdir)], capsys)
        assert code == 2 and f"checkpoint {path} {words}" in text and "weights_only" not in text
        assert "cached" not in text.lower() and not logdir.exists()
        assert validate.cli(["--val_dir", str(root), "--json_dir", str(root / "good.json"), "--checkpoint", str(path),
                             "--save_dir", str(tmp_path / "outs")]) == 2
        err = capsys.readouterr().err
        assert f"checkpoint {path} {words}" in err and "weights_only" not in err
        assert not (tmp_path / "outs").exists()
    assert "GLOBAL" in text and "system" in text  # the real reason: the global it would call


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(root, tmp_path, capsys):
    # At lr 1e37 AdamW's first step (1e38) sends the weights to +-1e38, so the second step's loss is NaN.
    logdir = tmp_path / "run"
    good = unet_checkpoint(logdir / "model_final.pt")  # of an earlier run
    before = good.read_bytes()
    code, text = run_main([*train_flags(root), "--logdir", str(logdir), "--save_checkpoint", "--max_epochs", "1",
                           "--max_steps_per_epoch", "2", "--batch_size", "1", "--optim_lr", "1e37",
                           "--lrschedule", "none"], capsys)
    assert code == 3 and "Traceback" not in text
    assert "training stopped: the loss is nan in epoch 0 after step 2 (optimizer step 2); cases of the batch:" in text
    assert any(str(root / "img" / f"train{i}.nii.gz") in text for i in range(2))  # the batch's case
    assert "no epoch completed yet, so there is nothing to resume" in text
    assert good.read_bytes() == before  # never overwritten with non-finite weights
    assert sorted(p.name for p in logdir.iterdir()) == ["model_final.pt"]  # no model.pt, no events


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    good = save_checkpoint(tmp_path / "model_final.pt", epoch=0, state_dict={"w": torch.ones(3)})
    before = good.read_bytes()
    with pytest.raises(CheckpointError, match=r"not writing .*model_final\.pt: 1 weight tensor\(s\) hold NaN"):
        save_checkpoint(good, epoch=1, state_dict={"w": torch.tensor([1.0, float("nan"), 0.0])})
    assert good.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["model_final.pt"]


def test_temp_file_of_a_sigkilled_write_is_removed_on_the_next_start(tmp_path):
    target = tmp_path / "model_final.pt"
    code = ("import os, signal, sys\nfrom labelfree.io.atomic import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'half a checkpoint')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    result = subprocess.run([sys.executable, "-c", code, str(target)], cwd=REPO, capture_output=True)
    assert result.returncode == -signal.SIGKILL
    (tmp_path / ".bashrc").write_text("not ours")
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".model_final.pt.")]
    assert len(left) == 1 and not target.exists()
    assert remove_stale_temp_files(tmp_path) == left
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bashrc"]


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_resume_ends_in_the_uninterrupted_state(root, tmp_path, capsys, monkeypatch):
    common = [*train_flags(root, "train_only.json"), "--save_checkpoint", "--max_epochs", "2", "--max_steps_per_epoch", "1",
              "--warmup_epochs", "2", "--val_every", "2"]
    # A real SIGTERM, sent to this process right after optimizer step 2 = the first step of epoch 1.
    monkeypatch.setenv("TUMORSEG_SIGNAL_AT_STEP", "2")
    code, text = run_main([*common, "--logdir", str(tmp_path / "resumed")], capsys)
    monkeypatch.delenv("TUMORSEG_SIGNAL_AT_STEP")
    assert code == 128 + signal.SIGTERM and "Traceback" not in text
    assert "SIGTERM: stopping after the current step (again to exit at once)" in text
    final = tmp_path / "resumed" / "model_final.pt"
    assert (f"stopped by SIGTERM in epoch 1 after step 1; last good checkpoint: {final} (epochs up to 0 done; the "
            f"partial epoch 1 is not saved); continue with the same command and --resume") in text
    assert load_checkpoint(final)["epoch"] == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back

    train_cli.main([*common, "--logdir", str(tmp_path / "resumed"), "--resume"])
    train_cli.main([*common, "--logdir", str(tmp_path / "straight")])
    resumed, straight = load_checkpoint(final), load_checkpoint(tmp_path / "straight" / "model_final.pt")
    assert resumed["epoch"] == straight["epoch"] == 1 and resumed["global_step"] == straight["global_step"] == 2
    assert resumed["scheduler"] == straight["scheduler"]
    assert resumed["optimizer"]["param_groups"] == straight["optimizer"]["param_groups"]
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, rtol=1e-5, atol=1e-6)


def test_second_ctrl_c_exits_at_once(root, tmp_path, capsys, monkeypatch):
    exits = []

    def fake_exit(code):  # os._exit would end pytest too
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(os, "_exit", fake_exit)
    monkeypatch.setenv("TUMORSEG_SIGNAL_AT_STEP", "1:INT,INT")  # Ctrl-C twice, after step 1
    code, text = run_main([*train_flags(root, "train_only.json"), "--logdir", str(tmp_path / "run"),
                           "--save_checkpoint", "--max_epochs", "1", "--max_steps_per_epoch", "1"], capsys)
    assert code == 130 and exits == [130] and "Traceback" not in text
    assert "Ctrl-C (SIGINT): stopping after the current step" in text
    assert "Ctrl-C (SIGINT) again: exiting at once (checkpoints already written are intact)" in text
    assert not (tmp_path / "run" / "model_final.pt").exists()


# ------------------------------------------------------------------------------------------- validation.py
def val_argv(root, tmp_path, datalist, *extra):
    ckpt = tmp_path / "run" / "model.pt"
    if not ckpt.exists():
        unet_checkpoint(ckpt)
    return ["--val_dir", str(root), "--json_dir", str(root / datalist), "--checkpoint", str(ckpt),
            "--save_dir", str(tmp_path / "outs"), "--device", "cpu", "--workers", "0", *extra]


def test_validation_lists_every_bad_case_before_predicting(root, tmp_path, capsys):
    assert validate.cli(val_argv(root, tmp_path, "bad_val.json")) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    for kind, entry in bad_entries(root).items():
        if kind == "empty":  # an evaluation label without organ: a warning, not an error
            line = next(line for line in lines if line.startswith("warning:") and f"] {kind}: " in line)
        else:
            line = next(line for line in lines if line.startswith("  validation[") and f"] {kind}: " in line)
        assert BAD_ROWS[kind] in line and file_of(root, entry, kind) in line, line
    assert f"{len(BAD_ROWS) - 1} of {len(BAD_ROWS) + 1} case(s) cannot be used" in err
    assert not (tmp_path / "outs").exists()


def test_validation_skips_bad_cases_and_refuses_an_occupied_folder_without_overwrite(root, tmp_path, capsys):
    assert validate.cli(val_argv(root, tmp_path, "bad_val.json", "--skip_bad_cases")) == 0
    err = capsys.readouterr().err
    assert f"{len(BAD_ROWS) - 1} bad case(s) left out; 2 of {len(BAD_ROWS) + 1} validation case(s) remain" in err
    out_dir = tmp_path / "outs" / "run" / "0.5"
    predicted = sorted(p.name.split(".")[0] for p in (out_dir / "pred").iterdir())
    assert predicted == ["empty", "val0"]  # the empty-organ label is only a warning here
    names = [line.split(",")[0] for line in (out_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert sorted(names) == predicted

    before = {p: p.stat().st_mtime_ns for p in out_dir.rglob("*") if p.is_file()}
    assert validate.cli(val_argv(root, tmp_path, "good.json")) == 2
    err = capsys.readouterr().err
    assert (f"output folder {out_dir} already holds an earlier evaluation (2 prediction(s) in pred/, metrics.csv, "
            f"summary.json); give --overwrite") in err
    assert {p: p.stat().st_mtime_ns for p in out_dir.rglob("*") if p.is_file()} == before  # untouched

    # --overwrite (and a patch size other than the checkpoint's, which is only a note).
    assert validate.cli(val_argv(root, tmp_path, "good.json", "--overwrite", "--roi_x", "48")) == 0
    out = capsys.readouterr().out
    assert f"note: checkpoint {tmp_path / 'run' / 'model.pt'} was saved with --roi_x 32 (this run: 48); using the flag" in out
    assert f"--overwrite: 4 file(s) of the earlier evaluation in {out_dir} deleted" in out
    assert sorted(p.name for p in (out_dir / "pred").iterdir()) == ["val0.nii.gz"]  # "empty" is gone
    assert [line.split(",")[0] for line in (out_dir / "metrics.csv").read_text().splitlines()[1:]] == ["val0"]


# ------------------------------------------------------------------------------------------- check_data.py
def test_check_data_reports_a_nan_image(root, capsys):
    assert check_data.main(["--json_dir", str(root / "bad_train.json"), "--train_dir", str(root), "--val_dir",
                            str(root), "--split", "training"]) == 1
    out = capsys.readouterr().out
    assert f"image holds 20 NaN or infinite voxel(s): {root / 'img' / 'nan.nii.gz'}" in out


def test_content_pass_in_worker_processes_finds_the_same(root):
    from labelfree.data.preflight import check_entries, label_convention

    data = json.loads((root / "bad_train.json").read_text())
    entries = [("training", i, {k: str(root / v) for k, v in e.items()}) for i, e in enumerate(data["training"])]
    convention = label_convention("liver", 3)
    serial = check_entries(entries, convention, workers=0)
    parallel = check_entries(entries, convention, workers=2)
    assert [r.problems for r in parallel] == [r.problems for r in serial]
    assert sum(bool(r.problems) for r in serial) == len(BAD_ROWS)
