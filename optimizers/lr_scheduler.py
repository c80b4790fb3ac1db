"""``from optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR`` of the original's scripts."""

from labelfree.optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR

__all__ = ["LinearWarmupCosineAnnealingLR"]
