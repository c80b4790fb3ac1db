"""The skeleton of every training run: epoch loop, state, checkpoints, progress, logging, stops.

As MONAI's ``Workflow`` serves its ``SupervisedTrainer`` and ``GanTrainer``, :class:`Workflow`
serves segmentation training (:class:`labelfree.training.trainer.Trainer`, ``main.py``) and
generator training (:class:`labelfree.training.generator_training.GeneratorTrainer`,
``syn_train.py``). It owns::

    for each epoch from start_epoch to max_epochs - 1:
        stop here if Ctrl-C / SIGTERM arrived (every rank agrees)
        run_epoch(epoch)                    -> the subclass: train_epoch(...) (+ validation)
            train_epoch: progress bar, train_step per batch, step timing, finite-loss and
            stop checks after every step, epoch sums all-reduced over ranks
        save the checkpoint atomically (rank 0; every rank waits)
        write the epoch's TensorBoard scalars (after the save: an epoch redone after a kill
        is not logged twice)

and the state every run continues from (epoch, optimizer steps, best metric, AMP scaler):
:meth:`restore` puts back exactly what :meth:`state` saved, so a resumed run ends where an
uninterrupted one does. Subclasses implement :meth:`run_epoch`, :meth:`train_step`,
:meth:`network_state` and :meth:`restore_networks`.

Only the main process (rank 0) prints, shows a progress bar, writes events and saves.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from labelfree.io.atomic import OutputWriteError
from labelfree.io.checkpoint import (
    CheckpointError,
    CheckpointUse,
    check_fit,
    load_checkpoint,
    save_checkpoint,
)
from labelfree.runtime.distributed import DistContext, all_reduce_sum, barrier, print0
from labelfree.runtime.interrupt import stop_if_requested
from labelfree.training.events import ScalarWriter
from labelfree.training.step_checks import after_step
from labelfree.training.step_timer import EpochTiming, StepTimer

#: Fault injection for tests and drills: after this many completed epochs (and their
#: checkpoints) the process kills itself with SIGKILL, like a preempted cluster job.
KILL_AFTER_EPOCHS_ENV = "TUMORSEG_KILL_AFTER_EPOCHS"


@dataclass
class StepResult:
    """What one optimizer step reports to the loop.

    Attributes:
        loss: the step's loss, checked to be finite (a float already on the CPU).
        samples: crops in the step's batch (for samples/s).
        sums: values added up over the epoch and all ranks (e.g. loss x batch size).
        postfix: the progress bar's text for this step.
    """

    loss: float
    samples: int
    sums: Mapping[str, float] = field(default_factory=dict)
    postfix: str = ""


class Workflow:
    """One training job's epochs on this process (single process or one DDP rank).

    Args:
        ctx: this process's place in the job.
        amp: mixed precision (CUDA); with ``False`` the scaler is a pass-through.
        logdir: TensorBoard events and checkpoints; ``None`` writes nothing.
        save: write checkpoints (into ``logdir``).
    """

    #: The checkpoint written after every epoch (what ``--resume`` continues).
    checkpoint_name: str = ""
    #: The checkpoint written when :meth:`run_epoch` reports a new best (``None``: not kept).
    best_checkpoint_name: str | None = None
    #: Whether the checkpoint records the best validation metric (``best_acc``).
    tracks_best: bool = False

    def __init__(self, ctx: DistContext, amp: bool, logdir: Path | None, save: bool) -> None:
        self.ctx = ctx
        self.device = ctx.device
        # One code path for fp32 and AMP: with enabled=False both are pass-throughs.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp)
        self.logdir = Path(logdir) if logdir is not None else None
        self.save_enabled = save and self.logdir is not None
        self.start_epoch = 0
        self.global_step = 0
        self.best_acc = 0.0
        self.writer = ScalarWriter(self.logdir) if ctx.is_main and self.logdir is not None else None

    # ------------------------------------------------------------------ subclass interface
    @property
    def max_epochs(self) -> int:
        raise NotImplementedError

    def run_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        """Train (and validate) one epoch; return its TensorBoard scalars and whether it is a new best."""
        raise NotImplementedError

    def train_step(self, batch: Any, epoch: int) -> StepResult:
        """One optimizer step on ``batch``."""
        raise NotImplementedError

    def network_state(self) -> dict[str, Any]:
        """The subclass's checkpoint entries: networks, optimizers, schedule, its own records."""
        raise NotImplementedError

    def restore_networks(self, checkpoint: Mapping[str, Any]) -> None:
        """Put back what :meth:`network_state` saved.

        Raises:
            CheckpointError: the checkpoint is of another kind or does not fit; the message
                continues "<what> <path> ..." (e.g. "is not a generator checkpoint").
        """
        raise NotImplementedError

    def finished(self) -> None:
        """Called once after the last epoch (a closing line)."""

    # ------------------------------------------------------------------ the loop
    def run(self) -> float:
        """Train from ``start_epoch`` to ``max_epochs``; return the best metric (0.0 when not tracked)."""
        if self.start_epoch >= self.max_epochs:
            print0(self.ctx, f"nothing to train: {self.start_epoch} of {self.max_epochs} epochs already done")
            return self.best_acc
        print0(self.ctx, f"training epochs {self.start_epoch}..{self.max_epochs - 1}")
        for epoch in range(self.start_epoch, self.max_epochs):
            stop_if_requested(self.ctx, epoch)  # Ctrl-C / SIGTERM during the last epoch's validation or save
            scalars, is_best = self.run_epoch(epoch)
            self.save(epoch, is_best)
            # Logged after the checkpoint: an epoch redone after a kill is not logged twice.
            self.log_scalars(scalars, epoch)
            self.maybe_kill_for_drill(epoch)
        if self.writer is not None:
            self.writer.close()
        self.finished()
        return self.best_acc

    def train_epoch(self, epoch: int, batches: Iterable, total: int, sum_keys: Sequence[str],
                    max_steps: float = float("inf")) -> tuple[dict[str, float], EpochTiming]:
        """One pass over this rank's batches: :meth:`train_step` each, with progress and checks.

        Args:
            epoch: the running epoch (progress bar, messages).
            batches: this rank's batches of the epoch.
            total: the steps the progress bar expects.
            sum_keys: the entries of :attr:`StepResult.sums` (the same on every rank: they
                are all-reduced in this order).
            max_steps: end the epoch after this many steps.

        Returns:
            The epoch's sums over all ranks, and this rank's timing (data wait vs compute).
        """
        sums = dict.fromkeys(sum_keys, 0.0)
        bar = tqdm(batches, total=total, desc=f"epoch {epoch}", disable=not self.ctx.is_main, dynamic_ncols=True)
        timer = StepTimer(self.device)
        for step, batch in enumerate(bar):
            if step >= max_steps:
                break
            timer.batch_arrived(batch)
            result = self.train_step(batch, epoch)
            self.global_step += 1
            timer.step_done(result.samples)
            after_step(result.loss, batch, epoch, step + 1, self.global_step, self.ctx)  # finite loss, no stop request
            for key, value in result.sums.items():
                sums[key] += value
            bar.set_postfix_str(f"{result.postfix} {timer.postfix()}")
        bar.close()
        totals = all_reduce_sum([sums[k] for k in sum_keys], self.ctx)
        return dict(zip(sum_keys, totals)), timer.finish()

    # ------------------------------------------------------------------ state
    def state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` (see ``labelfree.io.checkpoint``)."""
        state = {"epoch": epoch, "global_step": self.global_step, "scaler": self.scaler.state_dict()}
        if self.tracks_best:
            state["best_acc"] = float(self.best_acc)
        state.update(self.network_state())
        return state

    def restore(self, checkpoint: Mapping[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save` (full state)."""
        self.restore_networks(checkpoint)
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.global_step = int(checkpoint.get("global_step", 0))
        if self.tracks_best:
            self.best_acc = float(checkpoint.get("best_acc", 0.0))

    def resume(self, path: str | os.PathLike, use: CheckpointUse, flags: Mapping[str, Any]) -> None:
        """Restore from the checkpoint at ``path``; say which of ``use``'s noted flags differ from ``flags``.

        Raises:
            CheckpointError: unreadable file, or a flag that ``use`` refuses to change.
        """
        checkpoint = load_checkpoint(path)
        saved = checkpoint.get("args") if isinstance(checkpoint.get("args"), Mapping) else None
        notes = check_fit(saved, path, use, flags)
        try:
            self.restore(checkpoint)
        except CheckpointError as e:  # what is wrong with the file, named
            raise CheckpointError(f"{use.what} {path} {e}") from None
        for line in notes:
            print0(self.ctx, line)
        print0(self.ctx, f"resumed from {path}: continuing at epoch {self.start_epoch}")

    def save(self, epoch: int, is_best: bool = False) -> None:
        """Write the checkpoint (and the best one on a new best), atomically, on rank 0.

        Raises:
            OutputWriteError: a write failed (disk full, quota): the message names the file
                and the cause, and says that this epoch is not saved; the earlier checkpoint
                is intact.
        """
        if self.ctx.is_main and self.save_enabled:
            state = self.state(epoch)
            final = self.logdir / self.checkpoint_name
            try:
                save_checkpoint(final, **state)
            except OutputWriteError as e:
                resume = (f", then continue from {final} with the same command and --resume" if final.is_file()
                          else ", then run again")
                raise OutputWriteError(e.path, f"{e}; epoch {epoch} is not saved (make room{resume})") from e
            if is_best and self.best_checkpoint_name is not None:
                save_checkpoint(self.logdir / self.best_checkpoint_name, **state)
        # Ranks wait for the save, so a kill right after never finds a half-written epoch.
        barrier(self.ctx)

    # ------------------------------------------------------------------ logging, drills
    def log_scalars(self, scalars: dict[str, float], epoch: int) -> None:
        if self.writer is not None:
            self.writer.add_scalars(scalars, step=epoch)

    def maybe_kill_for_drill(self, epoch: int) -> None:
        if os.environ.get(KILL_AFTER_EPOCHS_ENV) == str(epoch + 1):
            print0(self.ctx, f"{KILL_AFTER_EPOCHS_ENV}={epoch + 1}: killing this process (fault drill)")
            os.kill(os.getpid(), signal.SIGKILL)
