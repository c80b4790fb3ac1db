"""Quality control of synthetic tumors in the training step, as FreeTumor does it.

A frozen segmentor trained on real tumors (any checkpoint ``main.py`` writes) looks at each
synthetic training crop, on the training device, batched and without gradients. The crop
keeps its synthetic tumors only when the segmentor recognises them:

    r = |synthetic tumor voxels predicted as their tumor class| / |synthetic tumor voxels|
    r > threshold (0.7)  -> the synthetic crop is used
    otherwise            -> the crop reverts to its healthy original image and label (no retry)

Crops holding a real tumor (in the healthy original) are never checked, and crops without
synthetic voxels have nothing to check. The loader carries the healthy crop beside the
synthetic one (:class:`HealthyCopy` copies the sample just before synthesis; the crop and
every augmentation then treat both alike), so a reverted crop is exactly its healthy original.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from labelfree.config.settings import RunSettings
from labelfree.io.checkpoint import USES, CheckpointError, check_fit, check_weights_match, extract_state_dict, load_checkpoint
from labelfree.networks.freeze import frozen

DEFAULT_THRESHOLD = 0.7


@dataclass
class QCStats:
    """One batch's decisions: crops checked (synthetic, no real tumor) and kept."""

    checked: int = 0
    accepted: int = 0

    def __iadd__(self, other: "QCStats") -> "QCStats":
        self.checked += other.checked
        self.accepted += other.accepted
        return self

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.checked if self.checked else float("nan")


class SyntheticTumorQC:
    """The quality-control step: keep or revert each synthetic crop of a batch.

    Args:
        segmentor: frozen network mapping (B, 1, H, W, D) crops to (B, K, H, W, D) logits.
        tumor_labels: label values of tumors in the convention (2; multi-organ 2, 4, 6).
        threshold: minimum recognised fraction r of the synthetic tumor voxels (exclusive).
        amp: run the segmentor under autocast (CUDA).
    """

    def __init__(self, segmentor: torch.nn.Module, tumor_labels: Sequence[int], threshold: float = DEFAULT_THRESHOLD,
                 amp: bool = False) -> None:
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"the QC threshold must be in [0, 1), got {threshold}")
        self.segmentor = frozen(segmentor)
        self.tumor_labels = tuple(int(t) for t in tumor_labels)
        self.threshold = float(threshold)
        self.amp = bool(amp)

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, label: torch.Tensor, healthy_image: torch.Tensor,
                 healthy_label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, QCStats]:
        """``(image, label, stats)`` with the rejected crops replaced by their healthy originals.

        All tensors are (B, 1, H, W, D) on the training device; the inputs are not modified.
        """
        tumor_values = torch.tensor(self.tumor_labels, device=label.device)
        synthetic = torch.isin(label, tumor_values) & (label != healthy_label)
        real_tumor = torch.isin(healthy_label, tumor_values).flatten(1).any(dim=1)
        n_synthetic = synthetic.flatten(1).sum(dim=1)
        check = (n_synthetic > 0) & ~real_tumor
        if not bool(check.any()):
            return image, label, QCStats()
        with torch.autocast(image.device.type, enabled=self.amp):
            logits = self.segmentor(image[check])
        pred = logits.argmax(dim=1, keepdim=True)
        recognised = ((pred == label[check]) & synthetic[check]).flatten(1).sum(dim=1)
        ratio = recognised.double() / n_synthetic[check].double()
        keep = ratio > self.threshold
        revert = torch.zeros_like(check)
        revert[check] = ~keep
        if bool(revert.any()):
            image, label = image.clone(), label.clone()
            image[revert] = healthy_image[revert].to(image.dtype)
            label[revert] = healthy_label[revert].to(label.dtype)
        return image, label, QCStats(checked=int(check.sum()), accepted=int(keep.sum()))


def load_qc_segmentor(path: str, run: RunSettings, device: torch.device, what: str = "--syn_qc") -> torch.nn.Module:
    """The frozen segmentor of ``--syn_qc`` (``what``), checked against this run's settings.

    Raises:
        CheckpointError: unreadable file, no recorded settings, weights that do not fit its
            recorded network, or preprocessing / label convention other than this run's (its
            crops would be judged in a different intensity window or grid).
    """
    checkpoint = load_checkpoint(path)
    settings = RunSettings.from_checkpoint(checkpoint)
    if settings is None:
        raise CheckpointError(f"{what} {path}: no settings or arguments recorded; it must be a checkpoint "
                              "written by main.py (trained on real tumors)")
    check_fit(settings.flat(), path, USES["qc_segmentor"], run.flat(), what=what)
    model = settings.build_model()
    weights = extract_state_dict(checkpoint, path)
    check_weights_match(model.state_dict(), weights, path)
    model.load_state_dict(weights, strict=True)
    return frozen(model.to(device))
