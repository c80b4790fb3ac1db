"""Optimizers and epoch-based learning-rate schedules."""

from labelfree.optimizers.factory import OPTIMIZER_NAMES, SCHEDULE_NAMES, build_optimizer, build_scheduler
from labelfree.optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR

__all__ = [
    "OPTIMIZER_NAMES",
    "SCHEDULE_NAMES",
    "build_optimizer",
    "build_scheduler",
    "LinearWarmupCosineAnnealingLR",
]
