"""labelfree.evaluation.comparison (scripts/comparison.py): arms compared in a table, plots and overlays."""

from __future__ import annotations

import json
import math

import nibabel as nib
import numpy as np
import pytest

from labelfree.evaluation import comparison
from labelfree.evaluation.report import metric_columns, write_metrics_csv


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
    rows = comparison.read_metrics_csv(arm_folder / "metrics.csv")
    s = comparison.summarize_arm(rows)
    assert s["cases"] == 3
    assert s["tumor_dice"]["mean"] == pytest.approx(0.4) and s["tumor_dice"]["n"] == 2  # NaN left out
    assert s["tumor_dice"]["std"] == pytest.approx(0.2)
    assert s["liver_dice"]["mean"] == pytest.approx(0.8)
    assert (s["lesions"], s["detected"]) == (4, 3) and s["sensitivity"] == pytest.approx(0.75)
    assert s["false_positives_per_case"] == pytest.approx(1.0)
    assert s["bins"]["r0_5"] == (0, 1) and s["bins"]["r10_15"] == (3, 3) and s["bins"]["r20_inf"] == (0, 0)


def test_markdown_table_values(arm_folder):
    s = comparison.summarize_arm(comparison.read_metrics_csv(arm_folder / "metrics.csv"))
    table = comparison.markdown_table({"synthetic": s}).splitlines()
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
    with pytest.raises(comparison.ReportError, match="no such metrics file"):
        comparison.read_metrics_csv(tmp_path / "metrics.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,liver_dice\nx,0.5\n")
    with pytest.raises(comparison.ReportError, match=r"bad\.csv: missing column"):
        comparison.read_metrics_csv(bad)


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

    code = comparison.main(["--arm", f"synthetic={arm_folder}", "--out", str(out), "--name", "demo",
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
    code = comparison.main(["--arm", f"real={arm_folder}", "--out", str(tmp_path / "out"),
                             "--json_dir", str(root / "list.json"), "--val_dir", str(root)])
    assert code == 2
    assert "no prediction of case liver_4 for arm real" in capsys.readouterr().err
