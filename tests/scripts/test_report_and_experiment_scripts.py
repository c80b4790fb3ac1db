"""Tests of the demo tooling: shell scripts parse, make_report's table, run_experiment's datalists."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from labelfree.evaluation.report import metric_columns, write_metrics_csv

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

import make_report  # noqa: E402
import run_experiment  # noqa: E402

SHELL_SCRIPTS = sorted((REPO / "scripts").glob("*.sh"))
EXPECTED_SCRIPTS = {"demo.sh", "train_syn.sh", "train_real.sh", "evaluate.sh", "train_torchrun.sh",
                    "train_multinode.sh"}


def test_every_expected_shell_script_exists():
    assert EXPECTED_SCRIPTS <= {p.name for p in SHELL_SCRIPTS}


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _row(name, liver, tumor, lesions=0, detected=0, fp=0, bins=None):
    row = {"name": name, "liver_dice": liver, "liver_nsd": liver, "tumor_dice": tumor, "tumor_nsd": tumor / 2,
           "lesions": lesions, "detected": detected, "predicted_lesions": detected + fp, "false_positives": fp}
    for bin_name, (d, n) in (bins or {}).items():
        row[f"lesions_{bin_name}"], row[f"detected_{bin_name}"] = n, d
    return row


@pytest.fixture()
def arm_folder(tmp_path):
    rows = [
        _row("liver_4", 0.9, 0.6, lesions=3, detected=2, fp=1, bins={"r0_5": (0, 1), "r10_15": (2, 2)}),
        _row("liver_5", 0.8, 0.2, lesions=1, detected=1, fp=0, bins={"r10_15": (1, 1)}),
        _row("liver_6", 0.7, math.nan, lesions=0, detected=0, fp=2),  # no tumor anywhere: NaN Dice
    ]
    folder = tmp_path / "arm"
    write_metrics_csv(rows, metric_columns(), folder / "metrics.csv")
    return folder


def test_summary_of_a_metrics_csv(arm_folder):
    rows = make_report.read_metrics_csv(arm_folder / "metrics.csv")
    s = make_report.summarize_arm(rows)
    assert s["cases"] == 3
    assert s["tumor_dice"]["mean"] == pytest.approx(0.4) and s["tumor_dice"]["n"] == 2  # NaN left out
    assert s["tumor_dice"]["std"] == pytest.approx(0.2)
    assert s["liver_dice"]["mean"] == pytest.approx(0.8)
    assert (s["lesions"], s["detected"]) == (4, 3) and s["sensitivity"] == pytest.approx(0.75)
    assert s["false_positives_per_case"] == pytest.approx(1.0)
    assert s["bins"]["r0_5"] == (0, 1) and s["bins"]["r10_15"] == (3, 3) and s["bins"]["r20_inf"] == (0, 0)


def test_markdown_table_values(arm_folder):
    s = make_report.summarize_arm(make_report.read_metrics_csv(arm_folder / "metrics.csv"))
    table = make_report.markdown_table({"synthetic": s}).splitlines()
    headers = [c.strip() for c in table[0].strip("|").split("|")]
    cells = dict(zip(headers, (c.strip() for c in table[2].strip("|").split("|"))))
    assert cells["arm"] == "synthetic" and cells["cases"] == "3"
    assert cells["tumor Dice"] == "0.400 ± 0.200"
    assert cells["tumor NSD"] == "0.200 ± 0.100"
    assert cells["liver Dice"] == "0.800 ± 0.082"
    assert cells["lesion sensitivity"] == "0.75 (3/4)"
    assert cells["sens. r 0-5 mm"] == "0.00 (0/1)"
    assert cells["sens. r 10-15 mm"] == "1.00 (3/3)"
    assert cells["sens. r >= 20 mm"] == "-"
    assert cells["FP lesions / case"] == "1.00"


def test_read_metrics_csv_errors_name_the_file(tmp_path):
    with pytest.raises(make_report.ReportError, match="no such metrics file"):
        make_report.read_metrics_csv(tmp_path / "metrics.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,liver_dice\nx,0.5\n")
    with pytest.raises(make_report.ReportError, match=r"bad\.csv: missing column"):
        make_report.read_metrics_csv(bad)


def _save(array, path, spacing=(2.0, 2.0, 3.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def test_make_report_cli_writes_table_plots_and_overlays(tmp_path, arm_folder, capsys):
    shape = (24, 20, 8)
    label = np.zeros(shape, np.uint8)
    label[4:20, 4:16, 1:7] = 1
    label[10:14, 8:12, 3:5] = 2
    root = tmp_path / "root"
    for name in ("liver_4", "liver_5", "liver_6"):
        _save(np.full(shape, 60, np.int16), root / "img" / f"{name}.nii.gz")
        _save(label, root / "label" / f"{name}.nii.gz")
        pred = label.copy()
        if name == "liver_5":
            pred[18:20, 14:16, 2:4] = 2  # a tumor touching no reference lesion
        _save(pred, arm_folder / "pred" / f"{name}.nii.gz")
    datalist = {"training": [], "validation": [{"image": f"img/{n}.nii.gz", "label": f"label/{n}.nii.gz"}
                                              for n in ("liver_4", "liver_5", "liver_6")]}
    (root / "list.json").write_text(json.dumps(datalist))
    out = tmp_path / "report"

    code = make_report.main(["--arm", f"synthetic={arm_folder}", "--out", str(out), "--name", "demo",
                             "--json_dir", str(root / "list.json"), "--val_dir", str(root), "--max_overlays", "2",
                             "--note", "a note", "--command", "bash scripts/demo.sh"])

    assert code == 0
    page = (out / "demo.md").read_text()
    assert "a note" in page and "| synthetic | 3 | 0.400 ± 0.200 |" in page and "bash scripts/demo.sh" in page
    assert "| synthetic | liver_6 | nan |" in page
    pngs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    # A false-positive overlay only for the case whose prediction has a false-positive tumor.
    assert pngs == ["demo_detection.png", "demo_scores.png", "overlays/synthetic_liver_4.png",
                    "overlays/synthetic_liver_5.png", "overlays/synthetic_liver_5_false_positive.png"]
    assert all(f"({p})" in page for p in pngs)
    assert "tumor Dice" in capsys.readouterr().out


def test_make_report_cli_missing_prediction_is_a_clear_error(tmp_path, arm_folder, capsys):
    root = tmp_path / "root"
    _save(np.zeros((4, 4, 4), np.int16), root / "img" / "liver_4.nii.gz")
    _save(np.zeros((4, 4, 4), np.uint8), root / "label" / "liver_4.nii.gz")
    (root / "list.json").write_text(json.dumps(
        {"validation": [{"image": "img/liver_4.nii.gz", "label": "label/liver_4.nii.gz"}]}))
    code = make_report.main(["--arm", f"real={arm_folder}", "--out", str(tmp_path / "out"),
                             "--json_dir", str(root / "list.json"), "--val_dir", str(root)])
    assert code == 2
    assert "no prediction of case liver_4 for arm real" in capsys.readouterr().err


def _fake_root(tmp_path, n_healthy=3, n_tumor=5):
    root = tmp_path / "exp_root"
    (root / "datafolds").mkdir(parents=True)
    healthy = [{"image": f"h/img{i}.nii.gz", "label": f"h/lab{i}.nii.gz"} for i in range(n_healthy)]
    tumors = [{"image": f"t/liver_{i}.nii.gz", "label": f"t/lab_{i}.nii.gz"} for i in range(n_tumor)]
    (root / "datafolds" / "healthy.json").write_text(json.dumps({"training": healthy, "validation": tumors}))
    (root / "datafolds" / "lits.json").write_text(json.dumps({"training": tumors, "validation": tumors}))
    return root, healthy, tumors


def test_experiment_datalists_share_one_held_out_set_disjoint_from_training(tmp_path):
    root, healthy, tumors = _fake_root(tmp_path)
    args = run_experiment.get_args_parser().parse_args(["--data_root", str(root), "--n_real_train", "2"])
    paths = run_experiment.build_datalists(args, tmp_path / "lists")
    lists = {arm: json.loads(p.read_text()) for arm, p in paths.items()}
    assert set(lists) == set(run_experiment.ARMS)
    held_out = tumors[2:]
    for arm, datalist in lists.items():
        assert datalist["validation"] == held_out, arm
        assert not any(item in held_out for item in datalist["training"]), arm
    assert lists["real"]["training"] == tumors[:2]
    assert lists["synthetic"]["training"] == healthy
    assert lists["mixed"]["training"] == healthy + tumors[:2]
    assert lists["synthetic_no_rim"]["training"] == healthy
    for arm in ("growth", "handcrafted_qc", "gan", "gan_qc"):
        assert lists[arm]["training"] == healthy, arm


def test_experiment_arms_get_the_same_number_of_steps(tmp_path):
    args = run_experiment.get_args_parser().parse_args(["--steps", "600", "--batch_size", "2"])
    plans = {}
    for arm, n_train in (("real", 4), ("synthetic", 8), ("mixed", 12), ("synthetic_no_rim", 8), ("growth", 8),
                         ("handcrafted_qc", 8), ("gan", 8), ("gan_qc", 8)):
        command = run_experiment.train_command(args, arm, tmp_path / f"{arm}.json", n_train, tmp_path / arm)
        flags = dict(c.split("=", 1) for c in command if c.startswith("--") and "=" in c)
        epochs = int(flags["--max_epochs"])
        plans[arm] = (epochs * math.ceil(n_train / 2), "--syn" in command, flags["--val_every"] == str(epochs),
                      flags.get("--syn_rim_mm"))
        if arm == "growth":
            assert command[command.index("--synthesis") + 1] == "growth"
        # the QC and generator arms use the real arm's final model and the generator syn_train.py writes
        segmentor = str(run_experiment.segmentor_path(args))
        qc = command[command.index("--syn_qc") + 1] if "--syn_qc" in command else None
        assert (qc == segmentor) == (arm in ("handcrafted_qc", "gan_qc")), arm
        if arm in ("gan", "gan_qc"):
            assert command[command.index("--synthesis") + 1] == "gan"
            assert command[command.index("--syn_generator") + 1] == str(run_experiment.generator_path(args))
        else:
            assert "--syn_generator" not in command
    assert plans == {"real": (600, False, True, None), "synthetic": (600, True, True, "3.0"),
                     "mixed": (600, True, True, "3.0"), "synthetic_no_rim": (600, True, True, "0.0"),
                     "growth": (600, True, True, None), "handcrafted_qc": (600, True, True, "3.0"),
                     "gan": (600, True, True, "3.0"), "gan_qc": (600, True, True, "3.0")}
    generator = run_experiment.generator_command(args, {"real": tmp_path / "real.json",
                                                        "synthetic": tmp_path / "synthetic.json"})
    assert generator[1] == "syn_train.py" and generator[generator.index("--segmentor") + 1] == segmentor
    assert generator[generator.index("--json_dir") + 1] == str(tmp_path / "real.json")  # never the held-out cases


def test_experiment_rejects_a_split_without_held_out_cases(tmp_path):
    root, _, _ = _fake_root(tmp_path, n_tumor=3)
    args = run_experiment.get_args_parser().parse_args(["--data_root", str(root), "--n_real_train", "3"])
    with pytest.raises(SystemExit, match="must leave held-out cases"):
        run_experiment.build_datalists(args, tmp_path / "lists")
