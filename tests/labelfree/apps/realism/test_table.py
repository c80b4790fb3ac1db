"""labelfree.apps.realism.table (scripts/realism_table.py): realism runs side by side."""

from __future__ import annotations

import json
from pathlib import Path

from labelfree.apps.realism import table


def _run(folder: Path, synthetic_median: float, auc: float, real_lesions: int = 5) -> Path:
    stat = {"unit": "HU", "real": {"median": -50.0, "p10": -70.0, "p90": -30.0},
            "synthetic": {"median": synthetic_median, "p10": -60.0, "p90": -20.0}, "w1_norm": 0.25}
    folder.mkdir()
    (folder / "realism.json").write_text(json.dumps({
        "statistics": {"difference_hu": stat}, "counts": {"real_lesions": real_lesions, "synthetic_lesions": 9},
        "auc": auc, "auc_std": 0.1, "turing_test": {"auc_folds": [auc - 0.1, auc + 0.1]}}))
    return folder


def test_one_column_per_run_with_the_real_lesions_first(tmp_path, capsys):
    a, b = _run(tmp_path / "a", -35.0, 0.7), _run(tmp_path / "b", -42.0, 0.55)
    assert table.main([f"handcrafted={a}", f"gan={b}", "--out", str(tmp_path / "t.md")]) == 0
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[0] == "| statistic | real | handcrafted | gan |"
    assert lines[2] == ("| difference_hu (HU) | -50 [-70, -30] | -35 [-60, -20] W1n 0.25 | "
                        "-42 [-60, -20] W1n 0.25 |")
    assert lines[3] == "| lesions | 5 | 9 | 9 |"
    assert lines[4].endswith("| 0.70 +- 0.10 (0.6, 0.8) | 0.55 +- 0.10 (0.45, 0.65) |")
    assert capsys.readouterr().out.splitlines() == lines


def test_runs_on_different_real_lesions_are_refused(tmp_path, capsys):
    a, b = _run(tmp_path / "a", -35.0, 0.7), _run(tmp_path / "b", -42.0, 0.55, real_lesions=6)
    assert table.main([f"a={a}", f"b={b}"]) == 2
    assert "different real lesions" in capsys.readouterr().err
