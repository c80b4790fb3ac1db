"""What the training loop checks after every optimizer step: a finite loss, no stop request.

A NaN or infinite loss never recovers: every later step and every checkpoint would hold
NaN weights, and the run would still end with exit status 0. :func:`after_step` stops the
run at the first such step with the step and the files of the batch; the epoch's
checkpoint is not written (and :func:`labelfree.io.checkpoint.save_checkpoint` refuses
non-finite weights anyway), so the last good ``model_final.pt`` stays. It also carries the
Ctrl-C / SIGTERM stop request of :mod:`labelfree.runtime.interrupt`, so that under DDP one
all-reduce per step tells every rank about both.
"""

from __future__ import annotations

import math
import os
import signal
from typing import Any, Mapping

from labelfree.runtime.distributed import DistContext, all_gather_objects, all_reduce_sum
from labelfree.runtime.interrupt import TrainingStopped, raise_if, requested

#: Fault drill for tests: ``"3"`` sends this process SIGTERM right after optimizer step 3;
#: ``"3:INT,INT"`` two SIGINTs (Ctrl-C twice). Real signals, through the real handlers.
SIGNAL_AT_STEP_ENV = "TUMORSEG_SIGNAL_AT_STEP"


class NonFiniteLossError(TrainingStopped):
    """The training loss became NaN or infinite."""

    exit_code = 3

    def __init__(self, loss: float, epoch: int, step: int, global_step: int, cases: list[str]) -> None:
        super().__init__(f"training stopped: the loss is {loss}", epoch, step)
        self.global_step, self.cases = global_step, cases

    def details(self) -> str:
        return (f" (optimizer step {self.global_step}); cases of the batch: {', '.join(self.cases) or 'unknown'}. "
                f"Check them with scripts/check_data.py (NaN/inf images), or lower --optim_lr")


def after_step(loss: float, batch: Mapping[str, Any], epoch: int, step: int, global_step: int,
               ctx: DistContext) -> None:
    """Raise :class:`NonFiniteLossError` or :class:`~labelfree.runtime.interrupt.StopRequested` after a step.

    Args:
        loss: the step's loss (a Python float, already on the host).
        batch: the step's batch (``image`` MetaTensor with its file names, ``case_index``).
        epoch: the running epoch.
        step: steps of this epoch done, this one included.
        global_step: optimizer steps of the run done, this one included.
        ctx: this process's place in the job; distributed, every rank calls this every step.
    """
    _maybe_signal_for_drill(global_step)
    bad = not math.isfinite(loss)
    stop = requested() is not None
    if ctx.distributed:
        n_bad, n_stop = all_reduce_sum([float(bad), float(stop)], ctx)
    else:
        n_bad, n_stop = float(bad), float(stop)
    if n_bad:
        losses_and_cases = all_gather_objects((loss, batch_cases(batch)) if bad else None, ctx)
        bad_ranks = [x for x in losses_and_cases if x is not None]
        cases = [c for _, rank_cases in bad_ranks for c in rank_cases]
        raise NonFiniteLossError(bad_ranks[0][0], epoch, step, global_step, cases)
    raise_if(n_stop > 0, epoch, step)


def batch_cases(batch: Mapping[str, Any]) -> list[str]:
    """The image files of a collated batch (MONAI metadata), else its datalist indices."""
    image = batch.get("image")
    meta = getattr(image, "meta", None) or batch.get("image_meta_dict") or {}
    names = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
    if names is not None:
        names = [names] if isinstance(names, str) else list(names)
        return list(dict.fromkeys(str(n) for n in names))
    from labelfree.data.loaders import CASE_INDEX_KEY

    if CASE_INDEX_KEY in batch:
        return [f"datalist training[{int(i)}]" for i in batch[CASE_INDEX_KEY]]
    return []


def _maybe_signal_for_drill(global_step: int) -> None:
    drill = os.environ.get(SIGNAL_AT_STEP_ENV)
    if not drill:
        return
    step, _, names = drill.partition(":")
    if int(step) == global_step:
        for name in (names or "TERM").split(","):
            os.kill(os.getpid(), getattr(signal, f"SIG{name.strip()}"))
