"""Epoch-based learning-rate schedules."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class LinearWarmupCosineAnnealingLR(LRScheduler):
    """Linear warm-up followed by cosine annealing, stepped once per epoch.

    For epoch ``e`` (0-based) and base learning rate ``b`` of each parameter group::

        e <  warmup_epochs:  warmup_start_lr + e * (b - warmup_start_lr) / (warmup_epochs - 1)
        e >= warmup_epochs:  eta_min + (b - eta_min) * (1 + cos(pi * (e - warmup_epochs)
                                                             / (max_epochs - warmup_epochs))) / 2

    This is the schedule the original trained with: the first epoch runs at
    ``warmup_start_lr`` (0 by default), the rate reaches ``b`` at epoch ``warmup_epochs`` and
    ``eta_min`` at ``max_epochs`` (and stays there after it). The value is computed in closed form each step (not
    chained from the previous one), so it cannot drift and restores exactly from
    ``state_dict()``.

    Args:
        optimizer: the wrapped optimizer; its groups' ``lr`` are the base rates.
        warmup_epochs: epochs of linear warm-up.
        max_epochs: total epochs (the end of the cosine).
        warmup_start_lr: learning rate at epoch 0.
        eta_min: final learning rate.
        last_epoch: index of the last epoch (-1 to start fresh).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_epochs: int,
        max_epochs: int,
        warmup_start_lr: float = 0.0,
        eta_min: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if warmup_epochs < 0 or max_epochs < 1:
            raise ValueError(f"need warmup_epochs >= 0 and max_epochs >= 1, got {warmup_epochs}, {max_epochs}")
        self.warmup_epochs = int(warmup_epochs)
        self.max_epochs = int(max_epochs)
        self.warmup_start_lr = float(warmup_start_lr)
        self.eta_min = float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch, base_lr) for base_lr in self.base_lrs]

    def lr_at(self, epoch: int, base_lr: float) -> float:
        """Learning rate of a group with base rate ``base_lr`` during epoch ``epoch``."""
        if epoch < self.warmup_epochs:
            # (warmup_epochs - 1) steps from the start rate to the base rate; with a single
            # warm-up epoch there is no ramp, only the start rate at epoch 0.
            ramp = epoch / max(1, self.warmup_epochs - 1)
            return self.warmup_start_lr + ramp * (base_lr - self.warmup_start_lr)
        # Past max_epochs (e.g. a run resumed with a larger --max_epochs) hold eta_min
        # instead of letting the cosine climb back up.
        progress = min(1.0, (epoch - self.warmup_epochs) / max(1, self.max_epochs - self.warmup_epochs))
        return self.eta_min + 0.5 * (base_lr - self.eta_min) * (1.0 + math.cos(math.pi * progress))
