"""Training and in-training validation epochs, TensorBoard logging and checkpoints.

``Trainer.run_training`` is the whole loop::

    for each epoch from start_epoch to max_epochs - 1:
        reshuffle / reseed the loader for this epoch
        train one epoch                         -> train_loss, lr
        every --val_every epochs and at the end:
            sliding-window validation           -> val_loss, per-class Dice, val_mean_dice
        step the learning-rate schedule
        save model_final.pt (and model.pt when the mean Dice is a new best)
        write the epoch's TensorBoard scalars

Only the main process (rank 0) prints, shows a progress bar, writes events and saves.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from labelfree.io.checkpoint import CHECKPOINT_BEST, CHECKPOINT_FINAL, save_checkpoint
from labelfree.data.loaders import CASE_INDEX_KEY, prepare_epoch
from labelfree.evaluation.metrics import dice_from_counts
from labelfree.runtime.distributed import DistContext, all_gather_objects, all_reduce_sum, barrier, print0
from labelfree.runtime.interrupt import stop_if_requested
from labelfree.io.atomic import write_text_atomic
from labelfree.training.quality_control import QCStats, SyntheticTumorQC
from labelfree.data.wrappers import HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY
from labelfree.training.step_timer import EpochTiming, StepTimer
from labelfree.training.step_checks import after_step

#: Fault injection for tests and drills: after this many completed epochs (and their
#: checkpoints) the process kills itself with SIGKILL, like a preempted cluster job.
KILL_AFTER_EPOCHS_ENV = "TUMORSEG_KILL_AFTER_EPOCHS"

CASE_LOG = "case_indices.jsonl"


@dataclass
class TrainerConfig:
    """What the loop needs to know besides its components.

    Attributes:
        max_epochs: total epochs (``--max_epochs``).
        val_every: validate after every ``val_every``-th epoch and after the last one.
        class_tags: TensorBoard tag of each foreground class's Dice, in label order
            (e.g. ``["val_liver_dice", "val_tumor_dice"]``).
        logdir: TensorBoard events and checkpoints; ``None`` writes nothing.
        save_checkpoint: write ``model_final.pt`` / ``model.pt`` (``--save_checkpoint``).
        amp: mixed precision (CUDA only).
        seed: base seed of the per-epoch data order and augmentation.
        max_steps_per_epoch: stop an epoch after this many optimizer steps (0: no limit).
        log_case_indices: record the datalist indices each rank trained on per epoch.
        args: the command line as a plain dict, stored in checkpoints.
        settings: the resolved run settings (``RunSettings.to_dict()``), stored in checkpoints
            so that evaluation rebuilds the same preprocessing and network.
    """

    max_epochs: int
    val_every: int
    class_tags: Sequence[str]
    logdir: Path | None = None
    save_checkpoint: bool = False
    amp: bool = False
    seed: int = 0
    max_steps_per_epoch: int = 0
    log_case_indices: bool = False
    args: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


class Trainer:
    """Runs the epochs of one training job (single process or one DDP rank).

    Args:
        model: the network, possibly wrapped in ``DistributedDataParallel``; checkpoints
            hold the unwrapped weights.
        optimizer: its optimizer.
        scheduler: epoch-based learning-rate schedule, or ``None``.
        loss_fn: ``loss_fn(logits (B, C, H, W, D), label (B, 1, H, W, D)) -> scalar``.
        train_loader: training batches of dicts with ``image``, ``label`` (and case index).
        val_loader: whole validation cases, one per batch (this rank's shard).
        inferer: ``inferer(image, network) -> logits``, e.g. a sliding-window inferer.
        ctx: this process's place in the job.
        config: see :class:`TrainerConfig`.
        synthetic_qc: quality control of synthetic crops (``--syn_qc``), or ``None``; batches
            then carry the healthy originals (``labelfree.training.quality_control``).
        learned_synthesis: ``(image, label, healthy image, healthy label) -> (image, label)``
            repainting the engine's tumors before quality control (``--synthesis gan``,
            ``labelfree.training.generator``), or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        train_loader,
        val_loader,
        inferer: Callable[[torch.Tensor, nn.Module], torch.Tensor],
        ctx: DistContext,
        config: TrainerConfig,
        synthetic_qc: SyntheticTumorQC | None = None,
        learned_synthesis: Callable | None = None,
    ) -> None:
        self.model = model
        self.model_without_ddp = model.module if hasattr(model, "module") else model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.inferer = inferer
        self.ctx = ctx
        self.config = config
        self.synthetic_qc = synthetic_qc
        self.learned_synthesis = learned_synthesis
        self.device = ctx.device
        # One code path for fp32 and AMP: with enabled=False both are pass-throughs.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp)
        self.start_epoch = 0
        self.best_acc = 0.0
        self.global_step = 0
        self.writer = ScalarWriter(config.logdir) if ctx.is_main and config.logdir is not None else None

    # ------------------------------------------------------------------ the loop
    def run_training(self) -> float:
        """Train from ``start_epoch`` to ``max_epochs``; return the best validation mean Dice."""
        if self.start_epoch >= self.config.max_epochs:
            print0(self.ctx, f"nothing to train: {self.start_epoch} of {self.config.max_epochs} epochs already done")
            return self.best_acc
        print0(self.ctx, f"training epochs {self.start_epoch}..{self.config.max_epochs - 1}")
        for epoch in range(self.start_epoch, self.config.max_epochs):
            stop_if_requested(self.ctx, epoch)  # Ctrl-C / SIGTERM during the last epoch's validation or save
            prepare_epoch(self.train_loader, epoch, self.config.seed, self.ctx.rank)
            lr = self.optimizer.param_groups[0]["lr"]
            loss, timing = self.train_epoch(epoch)
            scalars = {"train_loss": loss, "lr": lr, **timing.scalars(), **self._qc_scalars()}
            qc = f" | qc kept {self.qc_stats.accepted}/{self.qc_stats.checked}" if self.synthetic_qc else ""
            print0(self.ctx, f"epoch {epoch}: train_loss {loss:.4f}  lr {lr:.3g}  | {timing.summary()}{qc}")

            is_best = False
            if self.should_validate(epoch):
                metrics = self.validate(epoch)
                scalars.update(metrics)
                print0(self.ctx, "  " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
                if metrics["val_mean_dice"] > self.best_acc:
                    print0(self.ctx, f"  new best val_mean_dice {self.best_acc:.4f} -> {metrics['val_mean_dice']:.4f}")
                    self.best_acc = metrics["val_mean_dice"]
                    is_best = True

            if self.scheduler is not None:
                self.scheduler.step()
            self.save_checkpoints(epoch, is_best)
            # Logged after the checkpoint: an epoch redone after a kill is not logged twice.
            self.log_scalars(scalars, epoch)
            self.maybe_kill_for_drill(epoch)
        if self.writer is not None:
            self.writer.close()
        print0(self.ctx, f"training done; best val_mean_dice {self.best_acc:.4f}")
        return self.best_acc

    def should_validate(self, epoch: int) -> bool:
        last = epoch == self.config.max_epochs - 1
        return (epoch + 1) % self.config.val_every == 0 or last

    # ------------------------------------------------------------------ training
    def train_epoch(self, epoch: int) -> tuple[float, EpochTiming]:
        """One pass over this rank's training samples.

        Returns:
            The loss averaged over all ranks, and this rank's timing (data wait vs compute).
        """
        self.model.train()
        loss_sum, n_samples = 0.0, 0
        cases: list[int] = []
        max_steps = self.config.max_steps_per_epoch or math.inf
        total = min(len(self.train_loader), max_steps)
        bar = tqdm(
            self.train_loader, total=total, desc=f"epoch {epoch}", disable=not self.ctx.is_main, dynamic_ncols=True
        )
        timer = StepTimer(self.device)
        self.qc_stats = QCStats()
        for step, batch in enumerate(bar):
            if step >= max_steps:
                break
            timer.batch_arrived(batch)
            image, label = _to_device(batch, self.device)
            if self.synthetic_qc is not None or self.learned_synthesis is not None:
                healthy_image, healthy_label = _to_device(batch, self.device, HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY)
                if self.learned_synthesis is not None:  # the generator repaints the engine's tumors
                    image, label = self.learned_synthesis(image, label, healthy_image, healthy_label)
                if self.synthetic_qc is not None:
                    image, label, stats = self.synthetic_qc(image, label, healthy_image, healthy_label)
                    self.qc_stats += stats
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast(self.device.type, enabled=self.config.amp):
                logits = self.model(image)
                loss = self.loss_fn(logits, label)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.global_step += 1

            loss_value = loss.item()  # also waits for the GPU: the step's compute ends here
            timer.step_done(image.shape[0])
            after_step(loss_value, batch, epoch, step + 1, self.global_step, self.ctx)  # finite loss, no stop request
            loss_sum += loss_value * image.shape[0]
            n_samples += image.shape[0]
            if CASE_INDEX_KEY in batch:
                cases.extend(int(i) for i in batch[CASE_INDEX_KEY])
            bar.set_postfix_str(f"loss {loss_value:.4f} {timer.postfix()}")
        bar.close()
        if self.config.log_case_indices:
            self.record_cases(epoch, cases)
        loss_sum, n_samples = all_reduce_sum([loss_sum, float(n_samples)], self.ctx)
        return loss_sum / max(n_samples, 1.0), timer.finish()

    def _qc_scalars(self) -> dict[str, float]:
        """This epoch's quality-control figures, summed over ranks (none without ``--syn_qc``)."""
        if self.synthetic_qc is None:
            return {}
        checked, accepted = all_reduce_sum([float(self.qc_stats.checked), float(self.qc_stats.accepted)], self.ctx)
        self.qc_stats = QCStats(int(checked), int(accepted))
        rate = accepted / checked if checked else float("nan")
        return {"qc/acceptance_rate": rate, "qc/checked_crops": checked}

    def record_cases(self, epoch: int, cases: list[int]) -> None:
        """Append which datalist entries each rank trained on to ``<logdir>/case_indices.jsonl``."""
        by_rank = all_gather_objects(cases, self.ctx)
        if self.ctx.is_main and self.config.logdir is not None:
            path = self.config.logdir / CASE_LOG
            # Keep the earlier epochs of a resumed run; drop what a previous run logged from here on.
            lines = path.read_text().splitlines() if path.is_file() else []
            lines = [line for line in lines if json.loads(line)["epoch"] < epoch]
            lines.append(json.dumps({"epoch": epoch, "cases_by_rank": by_rank}))
            write_text_atomic(path, "\n".join(lines) + "\n")

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self, epoch: int) -> dict[str, float]:
        """Sliding-window validation of every case; metrics merged over ranks.

        Each rank scores its own unpadded shard with the unwrapped model (no DDP
        collectives inside the forward pass, so ranks may hold different numbers of
        cases); per-case results are gathered with their datalist index and deduplicated.

        Returns:
            ``val_loss``, ``val_mean_dice`` (mean over foreground classes of the per-class
            mean over cases) and one Dice per class under ``config.class_tags``.
        """
        model = self.model_without_ddp
        model.eval()
        num_classes = len(self.config.class_tags) + 1
        results = []
        bar = tqdm(self.val_loader, desc=f"validate {epoch}", disable=not self.ctx.is_main, dynamic_ncols=True)
        for batch in bar:
            image, label = _to_device(batch, self.device)
            with torch.autocast(self.device.type, enabled=self.config.amp):
                logits = self.inferer(image, model)
                loss = self.loss_fn(logits, label)
            pred = logits.argmax(dim=1)
            dice = dice_per_class(pred[0], label[0, 0], num_classes)
            case = int(batch[CASE_INDEX_KEY][0]) if CASE_INDEX_KEY in batch else len(results)
            results.append((case, float(loss), dice))
        bar.close()
        model.train()

        merged = {case: (loss, dice) for shard in all_gather_objects(results, self.ctx) for case, loss, dice in shard}
        losses = np.array([loss for loss, _ in merged.values()], dtype=float)
        dices = np.array([dice for _, dice in merged.values()], dtype=float).reshape(len(merged), num_classes - 1)
        per_class = np.nanmean(dices, axis=0) if len(merged) else np.full(num_classes - 1, np.nan)
        metrics = {"val_loss": float(np.mean(losses)) if len(losses) else float("nan")}
        metrics["val_mean_dice"] = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else 0.0
        metrics.update({tag: float(v) for tag, v in zip(self.config.class_tags, per_class)})
        return metrics

    # ------------------------------------------------------------------ state
    def state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue after ``epoch`` (see ``labelfree.io.checkpoint``)."""
        return {
            "epoch": epoch,
            "best_acc": float(self.best_acc),
            "global_step": self.global_step,
            "state_dict": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "args": self.config.args,
            "settings": self.config.settings,
        }

    def restore(self, checkpoint: dict) -> None:
        """Continue from a checkpoint written by :meth:`save_checkpoints` (full state)."""
        self.model_without_ddp.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.best_acc = float(checkpoint.get("best_acc", 0.0))
        self.global_step = int(checkpoint.get("global_step", 0))

    def save_checkpoints(self, epoch: int, is_best: bool) -> None:
        """Write ``model_final.pt`` (and ``model.pt`` on a new best), atomically, on rank 0."""
        if self.ctx.is_main and self.config.save_checkpoint and self.config.logdir is not None:
            state = self.state(epoch)
            save_checkpoint(self.config.logdir / CHECKPOINT_FINAL, **state)
            if is_best:
                save_checkpoint(self.config.logdir / CHECKPOINT_BEST, **state)
        # Ranks wait for the save, so a kill right after never finds a half-written epoch.
        barrier(self.ctx)

    def maybe_kill_for_drill(self, epoch: int) -> None:
        if os.environ.get(KILL_AFTER_EPOCHS_ENV) == str(epoch + 1):
            print0(self.ctx, f"{KILL_AFTER_EPOCHS_ENV}={epoch + 1}: killing this process (fault drill)")
            os.kill(os.getpid(), signal.SIGKILL)

    def log_scalars(self, scalars: dict[str, float], epoch: int) -> None:
        if self.writer is not None:
            self.writer.add_scalars(scalars, step=epoch)


class ScalarWriter:
    """TensorBoard scalars (and preview images), on disk as soon as they are logged.

    tensorboardX's ``SummaryWriter`` hands events to a background thread through a queue
    that ``flush()`` does not drain, so a killed job loses its last epochs' scalars. This
    writes each epoch's events synchronously into the usual ``events.out.tfevents.*`` file
    (the process id in the name keeps a resumed run from appending to the killed run's file).
    """

    def __init__(self, logdir: Path) -> None:
        self._logdir = logdir
        self._events = None  # opened with the first scalars: a run that fails before them leaves no file

    def add_scalars(self, scalars: dict[str, float], step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        for tag, value in scalars.items():
            self._write(Event(wall_time=time.time(), step=int(step), summary=scalar(tag, float(value))))
        if self._events is not None:
            self._events.flush()

    def add_image(self, tag: str, image, step: int) -> None:
        """One grey (H, W) image with values in [0, 1] (a tensor or an array)."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import image as image_summary

        array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float32)
        self._write(Event(wall_time=time.time(), step=int(step),
                          summary=image_summary(tag, array[None], dataformats="CHW")))
        self._events.flush()

    def _write(self, event) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        if self._events is None:
            self._logdir.mkdir(parents=True, exist_ok=True)
            self._events = EventsWriter(str(self._logdir / "events"), filename_suffix=f".{os.getpid()}")
        self._events.write_event(event)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()


def read_scalars(logdir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every scalar in a logdir's TensorBoard event files (file order)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(logdir).glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset + 12 <= len(data):  # TFRecord framing: length, its CRC, the record, its CRC
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            record = data[offset + 12:offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def dice_per_class(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> list[float]:
    """Dice of each foreground class between two label maps.

    Dice = 2|P and T| / (|P| + |T|). A class absent from the reference scores 1.0 when it is
    also absent from the prediction and 0.0 when it is predicted anyway, so a healthy
    validation case rewards predicting no tumor (the original scored every such case 0).

    Args:
        pred: predicted labels (H, W, D), integer.
        target: reference labels (H, W, D), same grid.
        num_classes: classes including background 0.

    Returns:
        Dice of classes ``1 .. num_classes - 1``.
    """
    target = target.to(pred.device).long()
    scores = []
    for c in range(1, num_classes):
        p, t = pred == c, target == c
        scores.append(dice_from_counts(int((p & t).sum()), int(p.sum()), int(t.sum())))
    return scores


def _to_device(batch: dict, device: torch.device, image_key: str = "image",
               label_key: str = "label") -> tuple[torch.Tensor, torch.Tensor]:
    """Plain tensors on ``device``: MetaTensor bookkeeping is not needed for the forward pass."""
    image, label = batch[image_key], batch[label_key]
    image = image.as_tensor() if hasattr(image, "as_tensor") else image
    label = label.as_tensor() if hasattr(label, "as_tensor") else label
    non_blocking = device.type == "cuda"
    return image.to(device, non_blocking=non_blocking), label.to(device, non_blocking=non_blocking)
