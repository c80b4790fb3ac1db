"""Block-shaped scans in several orientations, a thresholding stand-in network and UNet checkpoints.

Shared by the tests of validation.py and of the scoring CLI: predictions come from the real
path (MONAI infer pipeline -> sliding window -> Invertd) with a deterministic network.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from labelfree.cli import validate as validation
from labelfree.data.transforms import get_transforms
from labelfree.inference.predictor import Predictor
from labelfree.io.checkpoint import save_checkpoint

LIVER_PAIRS = (("liver", 1, "tumor", 2),)
#: The liver window (HU).
WINDOW = (-21.0, 189.0)
SHAPE = (40, 34, 22)
BLOCK = (slice(8, 22), slice(6, 16), slice(4, 12))  # off-centre on every axis: a flip would show


class ThresholdNet(torch.nn.Module):
    """Stand-in network: organ where the windowed image exceeds 0.5, tumor above ``tumor_at``."""

    def __init__(self, tumor_at: float | None = None):
        super().__init__()
        self.tumor_at = tumor_at

    def forward(self, x):
        organ = (x - 0.5) * 40
        if self.tumor_at is None:
            tumor = torch.full_like(x, -100.0)
        else:  # above tumor_at the tumor logit overtakes the organ's
            tumor = organ + (x - self.tumor_at) * 80
        return torch.cat([torch.zeros_like(x), organ, tumor], dim=1)


def affine_of(kind: str) -> np.ndarray:
    """Voxel -> world affine of a test scan: ``ras``, ``lps``, ``anisotropic`` or ``oblique``."""
    if kind == "oblique":
        affine = np.eye(4)
        rotation = Rotation.from_euler("xyz", [20, -10, 35], degrees=True).as_matrix()
        affine[:3, :3] = rotation @ np.diag([0.9, 1.2, 2.0])
    else:
        affine = np.diag({"ras": [1.0, 1.0, 1.0], "lps": [-0.8, -0.8, 2.5], "anisotropic": [1.0, 0.7, 3.0]}[kind] + [1.0])
    affine[:3, 3] = [-30.0, 50.0, 10.0]
    return affine


def save_volume(path: Path, data: np.ndarray, affine: np.ndarray) -> str:
    """``data`` as NIfTI at ``path`` (folders created); returns the path as a string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def block_scan(tmp_path: Path, kind: str, name: str = "case") -> dict:
    """A scan of ``SHAPE`` voxels: -100 HU, a 300 HU organ block (label 1) at ``BLOCK``; ``{name, image, label}``."""
    image = np.full(SHAPE, -100, np.int16)
    image[BLOCK] = 300
    label = np.zeros(SHAPE, np.uint8)
    label[BLOCK] = 1
    affine = affine_of(kind)
    return {
        "name": name,
        "image": save_volume(tmp_path / "img" / f"{name}.nii.gz", image, affine),
        "label": save_volume(tmp_path / "label" / f"{name}.nii.gz", label, affine),
    }


def evaluate_cases(tmp_path, cases, net, space=(1.5, 1.5, 1.5), postprocess=False):
    """validation.evaluate of ``cases`` with ``net`` (32^3 windows, overlap 0.25); returns (rows, output folder)."""
    transforms = get_transforms("infer", a_min=WINDOW[0], a_max=WINDOW[1], space=space)
    predictor = Predictor(net, transforms, roi_size=(32, 32, 32), overlap=0.25)
    out = tmp_path / "out"
    rows = validation.evaluate(predictor, transforms, cases, LIVER_PAIRS, out, postprocess=postprocess)
    return rows, out


#: The training flags a checkpoint of :func:`write_checkpoint` records.
TRAINING_ARGS = {
    "model_name": "unet", "swin_type": "tiny", "out_channels": 3, "num_classes": 3, "organ": "liver",
    "a_min": None, "a_max": None, "space_x": 2.0, "space_y": 2.0, "space_z": 2.0,
    "roi_x": 32, "roi_y": 32, "roi_z": 32,
}


def write_checkpoint(path: Path, args: dict | None = TRAINING_ARGS, weights: dict | None = None) -> Path:
    """An untrained original-config UNet checkpoint (or other ``weights``), with training ``args``."""
    if weights is None:
        from labelfree.networks import build_model

        torch.manual_seed(0)
        weights = build_model("unet", out_channels=3, roi_size=(32, 32, 32)).state_dict()
    state = {"epoch": 0, "best_acc": 0.0, "state_dict": weights}
    if args is not None:
        state["args"] = args
    save_checkpoint(path, **state)
    return path


def write_datalist(tmp_path: Path, kinds=("ras", "lps")) -> Path:
    """``tmp_path/data/fold.json``: one :func:`block_scan` validation case ``liver_<i>`` per orientation kind."""
    entries = []
    for i, kind in enumerate(kinds):
        block_scan(tmp_path / "data", kind, name=f"liver_{i}")
        entries.append({"image": f"img/liver_{i}.nii.gz", "label": f"label/liver_{i}.nii.gz"})
    path = tmp_path / "data" / "fold.json"
    path.write_text(json.dumps({"training": [], "validation": entries}))
    return path
