"""Sliding-window inference mapped back onto the exact voxel grid of the input scan.

The scan goes through the same ``infer`` pipeline as training (``labelfree.data.transforms``:
load, channel first, RAS, resample to the training spacing, HU window), the network
runs over it in overlapping windows blended with a Gaussian, and the class
probabilities are mapped back with ``monai.transforms.Invertd``: the recorded
``applied_operations`` of the image are undone (resampling with linear interpolation,
then the orientation), so the argmax is taken on the grid of the file on disk. The
result has the input's shape in the input's voxel order, for any orientation, spacing
or oblique affine.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from monai.data import decollate_batch
from monai.transforms import Compose, Invertd

from labelfree.io.checkpoint import (CheckpointError, extract_state_dict, flag_differences, load_checkpoint,
                                     weight_differences)
from labelfree.inference.roi import RoiInferer

PRED_KEY = "pred"
IMAGE_KEY = "image"


#: The settings that shape a network's weights, under validation.py's flag names.
NETWORK_FLAGS = ("model", "num_classes", "swin_type", "feature_size")


def load_model(
    model: torch.nn.Module, checkpoint_path: str | os.PathLike, settings: Mapping[str, Any],
    checkpoint: dict | None = None,
) -> dict:
    """Load the weights of a checkpoint into ``model``, explaining a mismatch in flag terms.

    Whether the checkpoint's recorded flags fit is decided before (``RunSettings.for_evaluation``,
    the ``"evaluation"`` use of ``labelfree.io.checkpoint.USES``); this explains weights that
    still do not fit, e.g. of a checkpoint that recorded nothing.

    Args:
        model: the network built from the settings.
        checkpoint_path: the ``model.pt`` file (used in messages and read when
            ``checkpoint`` is not given).
        settings: the settings the model was built with, under their flag names
            (``RunSettings.flat()``: ``model``, ``num_classes``, ``swin_type``, ``feature_size``, ...).
        checkpoint: the already loaded checkpoint dict, if any.

    Returns:
        The checkpoint dict.

    Raises:
        CheckpointError: the file is missing or corrupt, or its weights do not fit the
            model; the message names the flag that most probably differs.
    """
    if checkpoint is None:
        checkpoint = load_checkpoint(checkpoint_path)
    weights = extract_state_dict(checkpoint, checkpoint_path)
    expected = model.state_dict()
    missing, unexpected, mismatched = weight_differences(expected, weights)
    if missing or unexpected or mismatched:
        network = {k: settings.get(k) for k in NETWORK_FLAGS}
        raise CheckpointError(
            f"checkpoint {checkpoint_path} does not match the network built from "
            f"{' '.join(f'--{k}={v}' for k, v in network.items())}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected and {len(mismatched)} differently shaped weights"
            f"{_examples(missing, unexpected, mismatched, weights, expected)}. "
            f"{_mismatch_hint(checkpoint, network, missing, unexpected, mismatched, weights, expected)}"
        )
    model.load_state_dict(weights, strict=True)
    return checkpoint


def _examples(missing, unexpected, mismatched, weights, expected) -> str:
    parts = []
    if missing:
        parts.append(f"missing e.g. {missing[0]}")
    if unexpected:
        parts.append(f"unexpected e.g. {unexpected[0]}")
    if mismatched:
        k = mismatched[0]
        parts.append(f"{k}: checkpoint {tuple(weights[k].shape)} vs network {tuple(expected[k].shape)}")
    return " (" + "; ".join(parts) + ")"


def _mismatch_hint(checkpoint, network, missing, unexpected, mismatched, weights, expected) -> str:
    saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), Mapping) else None
    given = {k: v for k, v in network.items() if v is not None}
    differing = flag_differences(saved, given, NETWORK_FLAGS)
    if differing:
        return "Probably mismatching: " + ", ".join(differing) + "."
    if missing or unexpected:
        return "The layer names differ: probably --model (the architecture) does not match."
    # Same layers, different shapes. If every difference is a dimension that holds the class
    # count in the network and one same other number in the checkpoint, the class count differs.
    num_classes = network.get("num_classes")
    checkpoint_sizes = {
        w
        for k in mismatched
        if len(weights[k].shape) == len(expected[k].shape)
        for w, e in zip(weights[k].shape, expected[k].shape)
        if w != e and e == num_classes
    }
    only_class_dims = all(
        len(weights[k].shape) == len(expected[k].shape)
        and all(w == e or e == num_classes for w, e in zip(weights[k].shape, expected[k].shape))
        for k in mismatched
    )
    if num_classes is not None and only_class_dims and len(checkpoint_sizes) == 1:
        return f"Only the class count differs: probably --num_classes (the checkpoint has {checkpoint_sizes.pop()})."
    return "Layer widths differ: probably --swin_type or --feature_size does not match."


class Predictor:
    """Segment scans with a network and return label maps on the scans' own grids.

    Args:
        model: network mapping (B, 1, H, W, D) windows to (B, K, H, W, D) logits.
        transforms: the ``infer`` pipeline (``labelfree.data.transforms.get_transforms("infer", ...)``)
            that produced the batches; used to invert them.
        roi_size: sliding-window size in voxels of the resampled image.
        overlap: fraction of overlap between neighbouring windows (``--val_overlap``).
        sw_batch_size: windows per forward pass.
        device: where the network runs (and the blending buffer lives).
        amp: mixed precision (``torch.amp.autocast``) on CUDA; ignored on CPU.
        roi_mode: where windows are placed (``labelfree.inference.roi``): ``"none"`` (the
            whole volume), ``"body"`` or ``"organ"``; outside the ROI the prediction is background.
        body_threshold: the body / air threshold of ``body`` and ``organ``, in network input
            units (``labelfree.inference.roi.body_threshold(a_min, a_max)``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        transforms: Compose,
        roi_size: Sequence[int],
        overlap: float,
        sw_batch_size: int = 1,
        device: torch.device | str = "cpu",
        amp: bool = True,
        roi_mode: str = "none",
        body_threshold: float = 0.0,
    ):
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.roi_size = tuple(int(r) for r in roi_size)
        self.overlap = float(overlap)
        self.sw_batch_size = int(sw_batch_size)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.inferer = RoiInferer(self.roi_size, self.overlap, self.sw_batch_size, roi_mode, body_threshold)
        # Probabilities are inverted with the original interpolation (linear for the
        # resampling), then the argmax is taken on the input grid: smoother than
        # resampling hard labels with nearest neighbour.
        self.invert = Invertd(keys=PRED_KEY, transform=transforms, orig_keys=IMAGE_KEY, nearest_interp=False)

    @torch.no_grad()
    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities (B, K, H, W, D), float32, of a preprocessed batch."""
        image = image.to(self.device)
        with torch.amp.autocast(self.device.type, enabled=self.amp):
            # float32 logits: the blending buffer then accumulates in full precision under AMP.
            logits = self.inferer(image, lambda window: self.model(window).float())
        return torch.softmax(logits.float(), dim=1)

    def predict_batch(self, batch: dict) -> list[np.ndarray]:
        """Label maps of a collated batch from the ``infer`` pipeline.

        Returns:
            One uint8 (H, W, D) array per case, on the voxel grid of the file it was read from.
        """
        return self.labels_on_input_grid(batch, self.probabilities(batch[IMAGE_KEY]))

    def labels_on_input_grid(self, batch: dict, probabilities: torch.Tensor) -> list[np.ndarray]:
        """Map (B, K, H, W, D) probabilities of ``batch`` back to the input grids and take the argmax."""
        batch = dict(batch)
        batch[PRED_KEY] = probabilities
        labels = []
        for item in decollate_batch(batch, detach=True):
            inverted = self.invert(item)[PRED_KEY]
            labels.append(torch.argmax(inverted, dim=0).to(torch.uint8).cpu().numpy())
        return labels
