"""Segmentation training (``main.py``): the training step, in-training validation, the schedule.

:class:`Trainer` is a :class:`~labelfree.training.workflow.Workflow` (which owns the epoch
loop, checkpoints, progress, TensorBoard and stops); its epoch is::

    reshuffle / reseed the loader for this epoch
    train one epoch                             -> train_loss, lr (and quality-control figures)
    every --val_every epochs and at the end:
        sliding-window validation               -> val_loss, per-class Dice, val_mean_dice
    step the learning-rate schedule
    (the workflow then saves model_final.pt, and model.pt when the mean Dice is a new best)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from labelfree.data.loaders import CASE_INDEX_KEY, prepare_epoch
from labelfree.data.wrappers import HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY
from labelfree.evaluation.metrics import dice_from_counts
from labelfree.io.atomic import write_text_atomic
from labelfree.io.checkpoint import CHECKPOINT_BEST, CHECKPOINT_FINAL
from labelfree.runtime.distributed import DistContext, all_gather_objects, print0
# Re-exported: labelfree.apps.experiment reads a run's scalars through this module.
from labelfree.training.events import read_scalars  # noqa: F401
from labelfree.training.quality_control import QCStats, SyntheticTumorQC
from labelfree.training.step_timer import EpochTiming
from labelfree.training.workflow import StepResult, Workflow

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


class Trainer(Workflow):
    """Trains a segmentation network (single process or one DDP rank).

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

    checkpoint_name = CHECKPOINT_FINAL
    best_checkpoint_name = CHECKPOINT_BEST
    tracks_best = True

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
        super().__init__(ctx, config.amp, config.logdir, config.save_checkpoint)
        self.model = model
        self.model_without_ddp = model.module if hasattr(model, "module") else model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.loss_fn = loss_fn
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.inferer = inferer
        self.config = config
        self.synthetic_qc = synthetic_qc
        self.learned_synthesis = learned_synthesis
        self.qc_stats = QCStats()

    @property
    def max_epochs(self) -> int:
        return self.config.max_epochs

    def run_training(self) -> float:
        """Train from ``start_epoch`` to ``max_epochs``; return the best validation mean Dice."""
        return self.run()

    def finished(self) -> None:
        print0(self.ctx, f"training done; best val_mean_dice {self.best_acc:.4f}")

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        prepare_epoch(self.train_loader, epoch, self.config.seed, self.ctx.rank)
        lr = self.optimizer.param_groups[0]["lr"]
        loss, timing = self.train_epoch_loss(epoch)
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
        return scalars, is_best

    def should_validate(self, epoch: int) -> bool:
        last = epoch == self.config.max_epochs - 1
        return (epoch + 1) % self.config.val_every == 0 or last

    def train_epoch_loss(self, epoch: int) -> tuple[float, EpochTiming]:
        """One pass over this rank's training samples.

        Returns:
            The loss averaged over all samples of all ranks, and this rank's timing.
        """
        self.model.train()
        self._cases: list[int] = []
        self.qc_stats = QCStats()
        max_steps = self.config.max_steps_per_epoch or math.inf
        keys = ("loss", "samples") + (("qc_checked", "qc_accepted") if self.synthetic_qc is not None else ())
        sums, timing = self.train_epoch(epoch, self.train_loader, min(len(self.train_loader), max_steps), keys,
                                        max_steps)
        if self.synthetic_qc is not None:
            self.qc_stats = QCStats(int(sums["qc_checked"]), int(sums["qc_accepted"]))
        if self.config.log_case_indices:
            self.record_cases(epoch, self._cases)
        return sums["loss"] / max(sums["samples"], 1.0), timing

    def train_step(self, batch: dict, epoch: int) -> StepResult:
        image, label = _to_device(batch, self.device)
        stats = QCStats()
        if self.synthetic_qc is not None or self.learned_synthesis is not None:
            healthy_image, healthy_label = _to_device(batch, self.device, HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY)
            if self.learned_synthesis is not None:  # the generator repaints the engine's tumors
                image, label = self.learned_synthesis(image, label, healthy_image, healthy_label)
            if self.synthetic_qc is not None:
                image, label, stats = self.synthetic_qc(image, label, healthy_image, healthy_label)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.config.amp):
            logits = self.model(image)
            loss = self.loss_fn(logits, label)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

        loss_value = loss.item()  # also waits for the GPU: the step's compute ends here
        if CASE_INDEX_KEY in batch:
            self._cases.extend(int(i) for i in batch[CASE_INDEX_KEY])
        n = image.shape[0]
        sums = {"loss": loss_value * n, "samples": float(n)}
        if self.synthetic_qc is not None:
            sums.update(qc_checked=float(stats.checked), qc_accepted=float(stats.accepted))
        return StepResult(loss_value, n, sums, f"loss {loss_value:.4f}")

    def _qc_scalars(self) -> dict[str, float]:
        """This epoch's quality-control figures, summed over ranks (none without ``--syn_qc``)."""
        if self.synthetic_qc is None:
            return {}
        checked, accepted = self.qc_stats.checked, self.qc_stats.accepted
        rate = accepted / checked if checked else float("nan")
        return {"qc/acceptance_rate": rate, "qc/checked_crops": float(checked)}

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
    def network_state(self) -> dict[str, Any]:
        return {
            "state_dict": self.model_without_ddp.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "args": self.config.args,
            "settings": self.config.settings,
        }

    def restore_networks(self, checkpoint: Mapping[str, Any]) -> None:
        self.model_without_ddp.load_state_dict(checkpoint["state_dict"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and checkpoint.get("scheduler") is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])


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
