"""Optimizer and learning-rate schedule from the original's flags."""

from __future__ import annotations

from typing import Iterable

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler

from labelfree.optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR

OPTIMIZER_NAMES = ("adam", "adamw", "sgd")
SCHEDULE_NAMES = ("warmup_cosine", "cosine_anneal", "none")

# nnU-Net's SGD setting, which the original adopted for --optim_name sgd.
SGD_MOMENTUM = 0.99


def build_optimizer(params: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float) -> Optimizer:
    """Create ``adam`` / ``adamw`` / ``sgd`` (momentum 0.99, Nesterov).

    Args:
        params: the parameters to optimise.
        name: ``--optim_name``.
        lr: ``--optim_lr``, the base learning rate.
        weight_decay: ``--reg_weight``.
    """
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {list(OPTIMIZER_NAMES)}")


def build_scheduler(optimizer: Optimizer, name: str, warmup_epochs: int, max_epochs: int) -> LRScheduler | None:
    """Create the epoch-based schedule ``warmup_cosine`` / ``cosine_anneal`` / ``none``.

    Returns:
        The scheduler, or ``None`` for ``none`` (constant learning rate).
    """
    if name == "warmup_cosine":
        return LinearWarmupCosineAnnealingLR(optimizer, warmup_epochs=warmup_epochs, max_epochs=max_epochs)
    if name == "cosine_anneal":
        return CosineAnnealingLR(optimizer, T_max=max_epochs)
    if name in ("none", None):
        return None
    raise ValueError(f"unknown lr schedule {name!r}; choose one of {list(SCHEDULE_NAMES)}")
