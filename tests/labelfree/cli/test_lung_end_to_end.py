"""End to end on the chest phantoms: train on healthy lungs with synthetic nodules, score real ones.

``main.py --organ lung --syn`` for one short epoch on ``datafolds/chest.json`` (healthy
``05_Chest`` cases; validation on the ``06_LNDb`` nodule cases), then ``validation.py``
with the settings read back from the checkpoint, both as subprocesses. Coarse (6 mm)
resampling and 32^3 patches keep it to seconds; the numbers of a one-step model are not
asserted, the files, columns, label convention and ranges are.
"""

import pytest
import csv
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[3]
FAST = ["--roi_x", "32", "--roi_y", "32", "--roi_z", "32", "--space_x", "6", "--space_y", "6", "--space_z", "6",
        "--device", "cpu", "--workers", "0"]


def run(args, timeout=300):
    result = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
def test_lung_training_then_validation_reports_lung_and_nodule_scores(phantom_root, tmp_path):
    datalist = str(phantom_root / "datafolds" / "chest.json")
    logdir = tmp_path / "runs" / "lung"
    out = run(["main.py", "--organ", "lung", "--syn", "--train_dir", str(phantom_root), "--val_dir",
               str(phantom_root), "--json_dir", datalist, "--max_epochs", "1", "--val_every", "1",
               "--max_steps_per_epoch", "1", "--batch_size", "1", "--cache_num", "2", "--val_overlap", "0",
               "--seed", "0", "--logdir", str(logdir), "--save_checkpoint", *FAST])
    assert "val_lung_dice" in out and "val_nodule_dice" in out  # tags follow the organ's class names
    checkpoint = torch.load(logdir / "model.pt", map_location="cpu", weights_only=True)
    saved = checkpoint["args"]
    assert (saved["organ"], saved["num_classes"], saved["out_channels"]) == ("lung", 3, 3)
    assert (saved["a_min"], saved["a_max"]) == (-1000.0, 500.0)  # the lung profile's window

    save_dir = tmp_path / "outs"
    run(["validation.py", "--val_dir", str(phantom_root), "--json_dir", datalist, "--log_dir", str(logdir),
         "--save_dir", str(save_dir), "--val_overlap", "0", "--device", "cpu", "--workers", "0"])
    result_dir = save_dir / "lung" / "0.0"
    with open(result_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["name"] for r in rows} == {"LNDb-0001", "LNDb-0002"}
    assert list(rows[0])[:5] == ["name", "lung_dice", "lung_nsd", "nodule_dice", "nodule_nsd"]
    assert {"lesions_r0_5", "detected_r0_5", "lesions_r5_10", "detected_r5_10"} <= set(rows[0])
    for row in rows:
        for column in ("lung_dice", "lung_nsd", "nodule_dice", "nodule_nsd"):
            assert 0.0 <= float(row[column]) <= 1.0
        label = np.asarray(nib.load(phantom_root / "06_LNDb" / "label" / f"{row['name']}.nii.gz").dataobj)
        reference_nodules = int(row["lesions"])
        assert reference_nodules >= 1 and (label == 2).any()  # the nodule cases hold nodules
        assert sum(int(row[f"lesions_{b}"]) for b in ("r0_5", "r5_10", "r10_15", "r15_20", "r20_inf")) == reference_nodules
        pred = nib.load(result_dir / "pred" / f"{row['name']}.nii.gz")
        assert pred.shape == label.shape and set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
