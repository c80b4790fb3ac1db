"""Ctrl-C and SIGTERM: stop training at a clean point, say how to resume, no traceback.

Two phases:

* **preparing** (checking the data, caching, building the model): a signal stops at once
  (as :class:`Interrupted`, a ``KeyboardInterrupt``); nothing has been trained, so there is
  nothing to save, and :func:`exits_cleanly` turns it into one line and exit status
  128 + signal number (130 for Ctrl-C, 143 for SIGTERM).
* **training** (:func:`training_phase`): the first SIGINT/SIGTERM only sets a flag. The
  loop calls :func:`stop_if_requested` after every optimizer step and before every epoch
  and raises :class:`StopRequested` there; the partial epoch is dropped, and the last
  good checkpoint is ``model_final.pt`` of the last completed epoch (written after every
  epoch with ``--save_checkpoint``), from which ``--resume`` continues exactly as an
  uninterrupted run would (the data order and augmentation of an epoch depend only on
  seed, rank and epoch). A second signal exits at once (``os._exit``); the last
  checkpoint is still intact, since checkpoints are written atomically.

Cluster schedulers (SLURM) send SIGTERM some seconds before SIGKILL; a step takes far less
on a GPU, so the job ends with its last completed epoch saved. Under torchrun every rank
gets the signal; the ranks agree on stopping through one all-reduce per step, so none is
left waiting in a collective. DataLoader workers ignore both signals
(:func:`worker_init_fn`): Ctrl-C reaches every process of the terminal's process group, and
a worker killed by it would make the next batch fail before the loop can stop cleanly.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from typing import Any, Callable, Iterator

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A signal arrived before training started (raised from the signal handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


class TrainingStopped(Exception):
    """Training stopped before its last epoch; ``message`` says what to do next.

    Attributes:
        epoch: the epoch that was running (not completed, not saved).
        step: its optimizer steps done when it stopped (``None``: before its first step).
        exit_code: the process's exit status.
    """

    exit_code = 1

    def __init__(self, reason: str, epoch: int, step: int | None) -> None:
        super().__init__(reason)
        self.reason, self.epoch, self.step = reason, epoch, step

    def message(self, logdir: str | os.PathLike | None, save_checkpoint: bool, final_name: str) -> str:
        """The reason, where it stopped, where the last good checkpoint is, and how to go on."""
        where = f"in epoch {self.epoch}" + (f" after step {self.step}" if self.step is not None else ", before its first step")
        return f"{self.reason} {where}{self.details()}; {self.resume_hint(logdir, save_checkpoint, final_name)}"

    def details(self) -> str:
        """More about the stop, after where it happened (subclasses)."""
        return ""

    def resume_hint(self, logdir: str | os.PathLike | None, save_checkpoint: bool, final_name: str) -> str:
        if logdir is None or not save_checkpoint:
            return "no checkpoint is written without --logdir and --save_checkpoint: a rerun starts from the beginning"
        if self.epoch == 0 or not os.path.isfile(os.path.join(logdir, final_name)):
            return "no epoch completed yet, so there is nothing to resume: a rerun starts afresh"
        return (f"last good checkpoint: {os.path.join(logdir, final_name)} (epochs up to {self.epoch - 1} done; the "
                f"partial epoch {self.epoch} is not saved); continue with the same command and --resume")


class StopRequested(TrainingStopped):
    """SIGINT or SIGTERM during training: stopped at a clean point."""

    def __init__(self, signum: int, epoch: int, step: int | None) -> None:
        super().__init__(f"stopped by {signal_name(signum)}", epoch, step)
        self.exit_code = 128 + int(signum)


class _State:
    phase = "preparing"
    requested: int | None = None  # signal number of the first signal of the training phase


_state = _State()


def signal_name(signum: int) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def install() -> dict:
    """Handle SIGINT and SIGTERM in this process (main thread only; elsewhere a no-op).

    Returns:
        The previous handlers, for :func:`restore`.
    """
    previous = {}
    try:
        for signum in HANDLED_SIGNALS:
            previous[signum] = signal.signal(signum, _handler)
    except ValueError:  # not the main thread of the main interpreter
        pass
    return previous


def restore(previous: dict) -> None:
    """Put back the handlers :func:`install` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _handler(signum: int, frame: Any) -> None:
    if _state.phase != "training":
        raise Interrupted(signum)
    if _state.requested is not None:
        print(f"\n{signal_name(signum)} again: exiting at once (checkpoints already written are intact)",
              file=sys.stderr, flush=True)
        os._exit(128 + int(signum))
    _state.requested = signum
    if _is_main_rank():
        print(f"\n{signal_name(signum)}: stopping after the current step (again to exit at once)",
              file=sys.stderr, flush=True)


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def training_phase() -> Iterator[None]:
    """Within: a signal requests a stop at the next clean point instead of stopping at once."""
    install()
    _state.phase, _state.requested = "training", None
    try:
        yield
    finally:
        # A stop request belongs to this training phase only (a later run in the same process starts clean).
        _state.phase, _state.requested = "preparing", None


def requested() -> int | None:
    """The signal that asked training to stop, or ``None``."""
    return _state.requested


def stop_if_requested(ctx, epoch: int, step: int | None = None) -> None:
    """Raise :class:`StopRequested` on every rank when any rank got a signal.

    Args:
        ctx: the process's :class:`~labelfree.runtime.distributed.DistContext` (an all-reduce when
            distributed: every rank must call this at the same points).
        epoch: the running epoch.
        step: optimizer steps of the epoch done so far (``None``: at the start of the epoch).
    """
    from labelfree.runtime.distributed import all_reduce_sum

    (anyone,) = all_reduce_sum([1.0 if _state.requested else 0.0], ctx) if ctx is not None else [0.0]
    raise_if(anyone > 0, epoch, step)


def raise_if(stop_anywhere: bool, epoch: int, step: int | None) -> None:
    """Raise :class:`StopRequested` when this rank, or (``stop_anywhere``) any rank, got a signal."""
    if _state.requested or stop_anywhere:
        # A rank that did not get the signal itself stops for the others' (torchrun sends SIGTERM).
        raise StopRequested(_state.requested or signal.SIGTERM, epoch, step)


def exits_cleanly(main: Callable) -> Callable:
    """Decorate an entry point: a signal before training is one line and exit 128 + signal, no traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        previous = install()
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt as e:
            signum = getattr(e, "signum", signal.SIGINT)
            if _is_main_rank():
                print(f"\n{signal_name(signum)}: stopped before training started; nothing was trained or saved",
                      file=sys.stderr, flush=True)
            raise SystemExit(128 + int(signum)) from None
        finally:
            restore(previous)  # an entry point called from Python leaves its caller's handlers as they were

    return wrapper


def worker_init_fn(worker_id: int) -> None:
    """MONAI's DataLoader worker set-up (per-worker transform seeds), then signals ignored.

    The parent decides when to stop; it shuts its workers down through the DataLoader.
    """
    from monai.data.utils import worker_init_fn as monai_worker_init_fn

    monai_worker_init_fn(worker_id)
    for signum in HANDLED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
