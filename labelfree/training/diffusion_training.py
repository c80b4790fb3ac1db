"""Diffusion model training (``syn_train.py --model diffusion``) on the shared training skeleton.

One stream of crops: *real* tumor cases from the project's training pipeline, centred on
their tumors (``get_transforms(..., tumor_centred=True)``). Each step draws a flow time and
noise per crop and teaches the model the velocity of the tumor voxels given their healthy
surroundings (``tumor_synthesis.diffusion.TumorDiffusion.training_loss``); no discriminator,
no segmentor.

:class:`DiffusionTrainer` is a :class:`~labelfree.training.workflow.Workflow`: the epoch loop,
``diffusion.pt`` (written atomically after every epoch; exact resume), progress, TensorBoard
(the loss per epoch; preview slices real | blanked | sampled) and stops are the workflow's. An
epoch is ``steps_per_epoch`` steps over the real crops, cycled: a few real cases would
otherwise make epochs of one step and a checkpoint per step.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from labelfree.config.settings import RunSettings
from labelfree.data.loaders import (
    build_train_dataset,
    build_train_loader,
    prepare_epoch,
)
from labelfree.data.transforms import get_transforms
from labelfree.io.checkpoint import CheckpointError
from labelfree.runtime.distributed import DistContext, print0
from labelfree.training.generator import DIFFUSION_FILE, DIFFUSION_KIND
from labelfree.training.generator_training import preview_slice
from labelfree.training.workflow import StepResult, Workflow
from tumor_synthesis.diffusion import DiffusionConfig, TumorDiffusion

#: The per-epoch sums (TensorBoard scalar ``diffusion/loss``: the mean per step).
LOSS_TERMS = ("loss", "steps")


@dataclass
class DiffusionOptions:
    """``syn_train.py --model diffusion``'s hyperparameters and outputs.

    Attributes:
        max_epochs: epochs of ``steps_per_epoch`` steps.
        steps_per_epoch: optimizer steps per epoch (and per checkpoint).
        batch_size: real crops per step and process.
        lr: AdamW learning rate.
        seed: seed of the initialisation, data order, augmentation, noise and flow times.
        workers: loader worker processes.
        cache_num: real cases cached (deterministic prefix).
        preview_every: TensorBoard preview slices every N epochs (a sampling of ``config.steps``).
        logdir: where ``diffusion.pt`` and the events go.
        args: the command line as a plain dict, stored in the model file.
    """

    max_epochs: int
    steps_per_epoch: int
    batch_size: int
    lr: float
    seed: int
    workers: int
    cache_num: int
    preview_every: int
    logdir: Path
    args: dict = field(default_factory=dict)


class DiffusionTrainer(Workflow):
    """Velocity regression on real tumor crops: one AdamW step per batch.

    Args:
        settings: the crops' organ, window, spacing and patch size.
        config: the model (``tumor_synthesis.diffusion.DiffusionConfig``).
        real_cases: training items of real tumor cases.
        ctx: this process's place in the job.
        amp: mixed precision (CUDA).
        options: see :class:`DiffusionOptions`.
    """

    checkpoint_name = DIFFUSION_FILE

    def __init__(self, settings: RunSettings, config: DiffusionConfig, real_cases: list, ctx: DistContext,
                 amp: bool, options: DiffusionOptions) -> None:
        super().__init__(ctx, amp, options.logdir, save=True)
        self.settings, self.config, self.options, self.amp = settings, config, options, amp
        self.tumor_labels = [t for _, _, _, t in settings.label_pairs]
        transform = get_transforms("train", **settings.preprocessing(), roi_size=config.roi, organ=settings.organ,
                                   tumor_centred=True)
        dataset = build_train_dataset(real_cases, transform, options.cache_num, 1.0, options.workers,
                                      progress=ctx.is_main)
        self.loader = build_train_loader(dataset, options.batch_size, options.workers, ctx, seed=options.seed)
        print0(ctx, f"{len(real_cases)} real tumor cases, {options.steps_per_epoch} steps per epoch")
        torch.manual_seed(options.seed)  # same initial weights on every rank
        self.model = TumorDiffusion(config).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=options.lr)
        self.ddp = self.model
        if ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self._preview = None

    @property
    def max_epochs(self) -> int:
        return self.options.max_epochs

    def finished(self) -> None:
        print0(self.ctx, f"diffusion model: {self.logdir / DIFFUSION_FILE}")

    # --------------------------------------------------------------- state
    def network_state(self) -> dict[str, Any]:
        return {
            "kind": DIFFUSION_KIND,
            "diffusion_config": self.config.to_dict(),
            "state_dict": self.model.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "settings": self.settings.to_dict(),
            "args": self.options.args,
        }

    def restore_networks(self, checkpoint: Mapping[str, Any]) -> None:
        if checkpoint.get("kind") != DIFFUSION_KIND:
            raise CheckpointError("is not a diffusion model file of syn_train.py --model diffusion")
        try:
            self.model.net.load_state_dict(checkpoint["state_dict"])
        except RuntimeError as e:
            raise CheckpointError(f"does not fit this diffusion model: {e}") from None
        self.optimizer.load_state_dict(checkpoint["optimizer"])

    # --------------------------------------------------------------- one epoch
    def run_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        self.model.train()
        self._preview = None
        batches = itertools.islice(self._batches_of(epoch), self.options.steps_per_epoch)
        sums, _ = self.train_epoch(epoch, batches, self.options.steps_per_epoch, LOSS_TERMS)
        steps = max(sums.pop("steps"), 1.0)
        scalars = {"diffusion/loss": sums["loss"] / steps}
        print0(self.ctx, f"epoch {epoch}: loss {scalars['diffusion/loss']:.4f}")
        if self.writer is not None and self._preview is not None and epoch % self.options.preview_every == 0:
            self.writer.add_image("diffusion/preview", self.preview(*self._preview), step=epoch)
        return scalars, False

    def _batches_of(self, epoch: int) -> Iterator[dict]:
        """Real-tumor crops, cycling: each pass reseeded from (seed, rank, epoch, pass) only."""
        for k in range(1 << 20):
            prepare_epoch(self.loader, epoch * 1024 + k, self.options.seed, self.ctx.rank)
            yield from self.loader

    def noise_generator(self) -> torch.Generator:
        """This step's noise and flow times: from (seed, step, rank) only, so a resumed run draws the same."""
        step_seed = (self.options.seed * 1_000_003 + self.global_step) * 4099 + self.ctx.rank
        return torch.Generator().manual_seed(step_seed % (2 ** 62))

    def train_step(self, batch: dict, epoch: int) -> StepResult:
        image, label = batch["image"].to(self.device).float(), batch["label"].to(self.device)
        tumor = torch.isin(label, torch.tensor(self.tumor_labels, device=self.device))
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=self.amp):
            loss = self.ddp(image, tumor, self.noise_generator())
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self._preview = (image[:1].detach(), tumor[:1].detach())
        value = loss.item()
        return StepResult(value, image.shape[0], {"loss": value, "steps": 1.0}, f"loss {value:.4f}")

    @torch.no_grad()
    def preview(self, image: torch.Tensor, tumor: torch.Tensor) -> torch.Tensor:
        """(H, 3W) slice: real crop | tumor blanked | the model's sample (seeded), where most tumor is."""
        self.model.eval()
        sampled = self.model.sample(image, tumor, generator=torch.Generator().manual_seed(self.options.seed))
        self.model.train()
        blanked = torch.where(tumor, 0.5, image)
        return preview_slice(image[0, 0], blanked[0, 0], sampled[0, 0], tumor[0, 0])
