"""Tiny training data roots and the command-line runners of the training tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[2]
#: Small-data overrides appended to a main.py command (argparse: the last value wins).
SMALL = ["--roi_x", "32", "--roi_y", "32", "--roi_z", "32", "--space_x", "3", "--space_y", "3", "--space_z", "3",
         "--workers", "0", "--warmup_epochs", "1"]


def write_volume(path, data, spacing):
    """``data`` as NIfTI with an axis-aligned affine of voxel size ``spacing`` (mm)."""
    nib.save(nib.Nifti1Image(data, np.diag(list(spacing) + [1.0])), str(path))


def make_root(root, n_train=4, n_val=2, shape=(48, 48, 32), spacing=(3.0, 3.0, 3.0), healthy_train=True):
    """A data root: torso, liver ellipsoid (label 1); validation cases carry a tumor (label 2).

    Writes ``img/*.nii.gz``, ``label/*.nii.gz`` (``shape`` voxels of ``spacing`` mm, HU
    images) and ``datalist.json``; returns the datalist's path.
    """
    for sub in ("img", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    x, y, z = np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij")
    c = [s / 2 for s in shape]

    def case(name, seed, tumor):
        rng = np.random.default_rng(seed)
        shift = rng.uniform(-2, 2, 3)
        image = np.full(shape, -1000.0)
        label = np.zeros(shape, np.uint8)
        image[((x - c[0]) / 21) ** 2 + ((y - c[1]) / 17) ** 2 < 1] = 40
        liver = ((x - c[0] + 5 - shift[0]) / 12) ** 2 + ((y - c[1] - shift[1]) / 10) ** 2 + ((z - c[2]) / 10) ** 2 < 1
        image[liver], label[liver] = 110, 1
        if tumor:
            lesion = ((x - c[0] + 5) / 4) ** 2 + ((y - c[1]) / 4) ** 2 + ((z - c[2]) / 4) ** 2 < 1
            image[lesion], label[lesion] = 30, 2
        image = (image + rng.normal(0, 8, shape)).astype(np.int16)
        write_volume(root / "img" / f"{name}.nii.gz", image, spacing)
        write_volume(root / "label" / f"{name}.nii.gz", label, spacing)
        return {"image": f"img/{name}.nii.gz", "label": f"label/{name}.nii.gz"}

    datalist = {
        "training": [case(f"train{i}", i, tumor=not healthy_train) for i in range(n_train)],
        "validation": [case(f"val{i}", 100 + i, tumor=True) for i in range(n_val)],
    }
    (root / "datalist.json").write_text(json.dumps(datalist))
    return root / "datalist.json"


def data_flags(root):
    """The main.py data flags of a :func:`make_root` root."""
    return ["--json_dir", str(root / "datalist.json"), "--train_dir", str(root), "--val_dir", str(root)]


def free_port():
    """A TCP port that is free on this machine now (for torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cli(args, env_extra=None, timeout=300):
    """``python *args`` in the repository root, output captured (2 OpenMP threads unless set)."""
    env = {**os.environ, **(env_extra or {})}
    env.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
