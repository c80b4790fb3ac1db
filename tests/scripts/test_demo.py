"""scripts/demo.sh run for real (one epoch on a tiny data root), and the other launchers' syntax.

The demo's own settings (2 mm voxels, 64^3 patches, its flags) are kept; only the data root
is a tiny hand-made one (two healthy cases, one tumor case, 48 x 48 x 32 voxels at 3 mm) with
the files the demo looks for, so that its training, evaluation and report steps run end to end
in seconds instead of generating the default phantom root.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers.training import REPO, make_root

SCRIPTS = REPO / "scripts"
LAUNCHERS = {"demo.sh", "train_syn.sh", "train_real.sh", "evaluate.sh", "train_torchrun.sh", "train_multinode.sh"}


def test_every_launcher_exists():
    assert LAUNCHERS <= {p.name for p in SCRIPTS.glob("*.sh")}


@pytest.mark.parametrize("script", sorted(SCRIPTS.glob("*.sh")), ids=lambda p: p.name)
def test_shell_script_parses(script):
    """Syntax only: the launchers other than the demo need GPUs or real data to run."""
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_demo_trains_evaluates_and_writes_its_report(tmp_path):
    root = tmp_path / "data"
    datalist = make_root(root, n_train=2, n_val=1, healthy_train=True)  # validation case: a liver tumor
    (root / "datafolds").mkdir()
    shutil.copy(datalist, root / "datafolds" / "healthy.json")  # the demo's datalist
    (root / "phantom_info.json").write_text("{}")  # marks the root as generated: step 1 keeps it
    out = tmp_path / "demo_out"
    env = {**os.environ, "DATA_ROOT": str(root), "OUT": str(out), "EPOCHS": "1", "SEED": "3",
           "PYTHON": sys.executable, "OMP_NUM_THREADS": "2"}

    result = subprocess.run(["bash", str(SCRIPTS / "demo.sh")], env=env, capture_output=True, text=True, timeout=600)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "phantom data already in" in result.stdout
    run = out / "runs" / "synt.no_pretrain.unet"
    evaluation = out / "outs" / "synt.no_pretrain.unet" / "0.5"
    assert (run / "model.pt").is_file()
    assert (evaluation / "pred" / "val0.nii.gz").is_file()
    with (evaluation / "metrics.csv").open(newline="") as f:
        assert [row["name"] for row in csv.DictReader(f)] == ["val0"]
    html = evaluation / "report" / "index.html"  # validation.py's HTML report, and the demo says where it is
    assert (evaluation / "report" / "cases" / "case_000.js").is_file() and str(html) in result.stdout
    report = out / "report"
    page = (report / "demo.md").read_text()
    assert page.startswith("# Demo: UNet trained on synthetic tumors only, tested on phantom tumors")
    assert "| synthetic | 1 |" in page and "| synthetic | val0 |" in page and "bash scripts/demo.sh" in page
    for png in ("demo_scores.png", "demo_detection.png", "overlays/synthetic_val0.png"):
        assert (report / png).stat().st_size > 0 and f"({png})" in page
