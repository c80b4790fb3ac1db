"""Generator training (``syn_train.py``): FreeTumor's adversarial step on the shared training skeleton.

Two streams of crops per step, both from the project's training pipeline: crops of *real*
tumor cases, centred on their tumors, and crops of *healthy* cases with the engine's
ellipsoid tumors, carrying their healthy original. The generator repaints the engine's
tumors (``tumor_synthesis.learned``); a voxel-wise discriminator learns background / real
tumor / synthetic tumor; the generator learns to make its voxels look real to the
discriminator and tumor to a frozen segmentor trained on real tumors.

:class:`GeneratorTrainer` is a :class:`~labelfree.training.workflow.Workflow`: the epoch
loop, ``generator.pt`` (written atomically after every epoch; exact resume), progress,
TensorBoard and stops are the workflow's; an epoch is one pass over the healthy crops.
"""

from __future__ import annotations

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
from labelfree.data.wrappers import HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY
from labelfree.io.checkpoint import CheckpointError
from labelfree.networks.freeze import gradients_off
from labelfree.runtime.distributed import DistContext, print0
from labelfree.training.generator import GENERATOR_FILE, GENERATOR_KIND
from labelfree.training.quality_control import load_qc_segmentor
from labelfree.training.workflow import StepResult, Workflow
from tumor_synthesis.learned import (
    REAL_TUMOR,
    SYNTHETIC_TUMOR,
    GeneratorConfig,
    TumorGenerator,
    build_discriminator,
    discriminator_loss,
    discriminator_targets,
    generator_loss,
    synthetic_tumor_mask,
)

#: The per-epoch sums (and TensorBoard scalars ``generator/<name>``, means per step).
LOSS_TERMS = ("loss_d", "loss_g", "adversarial", "segmentor")


@dataclass
class GeneratorOptions:
    """``syn_train.py``'s hyperparameters and outputs.

    Attributes:
        max_epochs: passes over the healthy cases.
        batch_size: crops per stream, step and process.
        lr: Adam learning rate of both networks (betas 0.5, 0.999).
        adv_weight: weight of the adversarial term.
        seg_weight: weight of the segmentor term.
        seed: seed of the initialisation, data order and augmentation.
        workers: loader worker processes per stream and process.
        cache_num: cases cached per stream (deterministic prefix).
        preview_every: TensorBoard preview slices every N epochs.
        logdir: where ``generator.pt`` and the events go.
        segmentor: the frozen segmentor's checkpoint (``None``: no segmentor term).
        args: the command line as a plain dict, stored in the checkpoint.
    """

    max_epochs: int
    batch_size: int
    lr: float
    adv_weight: float
    seg_weight: float
    seed: int
    workers: int
    cache_num: int
    preview_every: int
    logdir: Path
    segmentor: str | None = None
    args: dict = field(default_factory=dict)


class GeneratorTrainer(Workflow):
    """The adversarial loop: per step one discriminator update, then one generator update.

    Args:
        settings: the crops' organ, window, spacing and patch size.
        config: the generator's network (``tumor_synthesis.learned.GeneratorConfig``).
        datalists: ``{"real": [...], "healthy": [...]}`` training items of the two streams.
        ctx: this process's place in the job.
        amp: mixed precision (CUDA).
        options: see :class:`GeneratorOptions`.
    """

    checkpoint_name = GENERATOR_FILE

    def __init__(self, settings: RunSettings, config: GeneratorConfig, datalists: Mapping[str, list],
                 ctx: DistContext, amp: bool, options: GeneratorOptions) -> None:
        super().__init__(ctx, amp, options.logdir, save=True)
        self.settings, self.config, self.options, self.amp = settings, config, options, amp
        self.tumor_labels = [t for _, _, _, t in settings.label_pairs]
        self.real_loader, self.healthy_loader = self._loaders(datalists)
        torch.manual_seed(options.seed)  # same initial weights on every rank
        self.generator = TumorGenerator(config).to(self.device)
        self.discriminator = build_discriminator(config.channels).to(self.device)
        self.segmentor = None
        if options.segmentor is not None:
            self.segmentor = load_qc_segmentor(options.segmentor, settings, self.device, what="--segmentor")
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=options.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=options.lr, betas=(0.5, 0.999))
        self.g_ddp, self.d_ddp = self.generator, self.discriminator
        if ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_ddp = torch.nn.parallel.DistributedDataParallel(self.generator, device_ids=ids)
            self.d_ddp = torch.nn.parallel.DistributedDataParallel(self.discriminator, device_ids=ids)
        self._real_batches: Iterator[dict] = iter(())
        self._preview = None

    def _loaders(self, datalists: Mapping[str, list]):
        preprocessing = self.settings.preprocessing()
        real = get_transforms("train", **preprocessing, roi_size=self.settings.roi, organ=self.settings.organ,
                              tumor_centred=True)
        healthy = get_transforms("train", **preprocessing, roi_size=self.settings.roi, organ=self.settings.organ,
                                 syn=True, syn_prob=1.0, keep_healthy=True, tumor_centred=True)
        loaders = []
        for stream, transform in (("real", real), ("healthy", healthy)):
            dataset = build_train_dataset(datalists[stream], transform, self.options.cache_num, 1.0,
                                          self.options.workers, progress=self.ctx.is_main)
            loaders.append(build_train_loader(dataset, self.options.batch_size, self.options.workers, self.ctx,
                                              seed=self.options.seed))
        print0(self.ctx, f"{len(datalists['real'])} real tumor cases, {len(datalists['healthy'])} healthy cases "
                         f"(engine tumors repainted by the generator)")
        return loaders

    @property
    def max_epochs(self) -> int:
        return self.options.max_epochs

    def finished(self) -> None:
        print0(self.ctx, f"generator: {self.logdir / GENERATOR_FILE}")

    # --------------------------------------------------------------- state
    def network_state(self) -> dict[str, Any]:
        return {
            "kind": GENERATOR_KIND,
            "generator_config": self.config.to_dict(),
            "state_dict": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "settings": self.settings.to_dict(),
            "args": self.options.args,
        }

    def restore_networks(self, checkpoint: Mapping[str, Any]) -> None:
        if checkpoint.get("kind") != GENERATOR_KIND:
            raise CheckpointError("is not a generator checkpoint of syn_train.py")
        try:
            self.generator.load_state_dict(checkpoint["state_dict"])
            self.discriminator.load_state_dict(checkpoint["discriminator"])
        except RuntimeError as e:
            raise CheckpointError(f"does not fit this generator: {e}") from None
        self.opt_g.load_state_dict(checkpoint["optimizer_g"])
        self.opt_d.load_state_dict(checkpoint["optimizer_d"])

    # --------------------------------------------------------------- one epoch
    def run_epoch(self, epoch: int) -> tuple[dict[str, float], bool]:
        prepare_epoch(self.healthy_loader, epoch, self.options.seed, self.ctx.rank)
        self.generator.train()
        self.discriminator.train()
        self._real_batches = self._real_batches_of(epoch)
        self._preview = None
        sums, _ = self.train_epoch(epoch, self.healthy_loader, len(self.healthy_loader), LOSS_TERMS + ("steps",))
        steps = max(sums.pop("steps"), 1.0)
        scalars = {f"generator/{k}": v / steps for k, v in sums.items()}
        print0(self.ctx, f"epoch {epoch}: " + "  ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in scalars.items()))
        if self.writer is not None and self._preview is not None and epoch % self.options.preview_every == 0:
            self.writer.add_image("generator/preview", preview_slice(*self._preview), step=epoch)
        return scalars, False

    def _real_batches_of(self, epoch: int) -> Iterator[dict]:
        """Real-tumor crops, cycling: each pass reseeded from (seed, rank, epoch, pass) only."""
        for k in range(1 << 20):
            prepare_epoch(self.real_loader, epoch * 1024 + k, self.options.seed + 1, self.ctx.rank)
            yield from self.real_loader

    def train_step(self, batch: dict, epoch: int) -> StepResult:
        real = next(self._real_batches)
        dev = self.device
        real_image, real_label = real["image"].to(dev).float(), real["label"].to(dev)
        engine_image, label = batch["image"].to(dev).float(), batch["label"].to(dev)
        healthy, healthy_label = batch[HEALTHY_IMAGE_KEY].to(dev).float(), batch[HEALTHY_LABEL_KEY].to(dev)
        mask = synthetic_tumor_mask(label, healthy_label, self.tumor_labels)
        organ = healthy_label > 0
        real_tumor = torch.isin(real_label, torch.tensor(self.tumor_labels, device=dev))
        autocast = torch.autocast(dev.type, enabled=self.amp)

        with autocast:
            painted = self.g_ddp(healthy, engine_image, mask, organ)
        # Discriminator: real tumors vs the generator's (detached) tumors.
        self.opt_d.zero_grad(set_to_none=True)
        with autocast:  # one forward of both halves (instance norm is per crop): one DDP gradient sync
            logits = self.d_ddp(torch.cat([real_image, painted.detach()])).split(
                [real_image.shape[0], painted.shape[0]])
        loss_d = discriminator_loss(logits, [discriminator_targets(real_tumor, REAL_TUMOR),
                                             discriminator_targets(mask, SYNTHETIC_TUMOR)])
        self.scaler.scale(loss_d).backward()
        self.scaler.step(self.opt_d)
        # Generator: through the frozen discriminator (its module, not its DDP wrapper: no
        # gradient sync for a network this step does not update) and the frozen segmentor.
        self.opt_g.zero_grad(set_to_none=True)
        with gradients_off(self.discriminator):
            with autocast:
                disc = self.discriminator(painted)
                seg = self.segmentor(painted) if self.segmentor is not None else None
            loss_g, terms = generator_loss(disc, seg, label, mask, self.options.adv_weight, self.options.seg_weight)
            self.scaler.scale(loss_g).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self._preview = (healthy[0, 0].detach(), engine_image[0, 0].detach(), painted[0, 0].detach(), mask[0, 0])
        d, g = loss_d.item(), loss_g.item()
        return StepResult(d + g, engine_image.shape[0], {"loss_d": d, "loss_g": g, **terms, "steps": 1.0},
                          f"D {d:.3f} G {g:.3f}")


def preview_slice(healthy: torch.Tensor, engine: torch.Tensor, painted: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """(H, 3W) image in [0, 1]: healthy | engine | generator, on the axial slice with most tumor."""
    z = int(mask.flatten(0, 1).sum(0).argmax()) if bool(mask.any()) else mask.shape[-1] // 2
    row = torch.cat([healthy[..., z], engine[..., z], painted[..., z]], dim=0)
    return row.float().clamp(0, 1).T.flip(0).cpu()  # x to the right, y up (radiological display)
