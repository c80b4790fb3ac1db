"""Optimizers and epoch-based learning-rate schedules."""

from optimizers.factory import OPTIMIZER_NAMES, SCHEDULE_NAMES, build_optimizer, build_scheduler
from optimizers.lr_scheduler import LinearWarmupCosineAnnealingLR

__all__ = [
    "OPTIMIZER_NAMES",
    "SCHEDULE_NAMES",
    "build_optimizer",
    "build_scheduler",
    "LinearWarmupCosineAnnealingLR",
]
