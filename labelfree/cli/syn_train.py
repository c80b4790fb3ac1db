"""Train the tumor generator of ``main.py --synthesis gan`` (FreeTumor's learned synthesis).

Two streams of crops per step, both from the project's training pipeline: crops of *real*
tumor cases, centred on their tumors (``--json_dir``), and crops of *healthy* cases with the
engine's ellipsoid tumors, carrying their healthy original (``--healthy_json``). The generator
repaints the engine's tumors (``tumor_synthesis.learned``); a voxel-wise discriminator learns
background / real tumor / synthetic tumor; the generator learns to make its voxels look real to
the discriminator and tumor to a frozen segmentor trained on real tumors (``--segmentor``, any
``model.pt`` main.py wrote without --syn).

    python syn_train.py --train_dir data/phantom --segmentor runs/real/model.pt --logdir runs/generator
    torchrun --nproc_per_node 2 syn_train.py ...        # DDP, gloo on CPU, NCCL on GPUs

Writes ``<logdir>/generator.pt`` atomically after every epoch (full state: ``--resume``
continues it; ``main.py --syn_generator`` reads the generator from it) and TensorBoard events
(losses per epoch, and preview slices: healthy | engine | generator).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from labelfree.config import flags as cli
from labelfree.runtime import interrupt
from labelfree.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from labelfree.data.loaders import build_train_dataset, build_train_loader, prepare_epoch
from labelfree.data.datalist import DatalistError, check_datalist_files, load_datalist
from labelfree.runtime.distributed import (DistContext, all_reduce_sum, barrier, cleanup, env_rank, init_distributed, launch,
                                   plan_launch, print0, resolve_device)
from labelfree.io.atomic import remove_stale_temp_files
from labelfree.training.quality_control import load_qc_segmentor
from labelfree.data.wrappers import HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY
from labelfree.config.settings import RunSettings, SettingsError
from labelfree.training.step_checks import after_step
from labelfree.training.generator import GENERATOR_FILE, GENERATOR_KIND
from labelfree.training.trainer import ScalarWriter
from labelfree.data.transforms import get_transforms
from tumor_synthesis.learned import (REAL_TUMOR, SYNTHETIC_TUMOR, GeneratorConfig, TumorGenerator,
                                     build_discriminator, discriminator_loss, discriminator_targets, generator_loss,
                                     synthetic_tumor_mask)

#: Flags whose change makes a resumed generator run differ from the interrupted one.
RESUME_SENSITIVE_FLAGS = ("organ", "a_min", "a_max", "space_x", "space_y", "space_z", "roi_x", "roi_y", "roi_z",
                          "batch_size", "lr", "adv_weight", "seg_weight", "max_offset_hu", "gen_channels", "seed",
                          "json_dir", "healthy_json", "segmentor")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    group = parser.add_argument_group("data")
    group.add_argument("--train_dir", default="data/phantom",
                       help="data root the datalists' paths are relative to (default: the phantom root)")
    group.add_argument("--json_dir", default=None,
                       help="datalist of REAL tumor cases, its 'training' list (default <train_dir>/datafolds/lits.json)")
    group.add_argument("--healthy_json", default=None,
                       help="datalist of healthy cases the engine paints (default <train_dir>/datafolds/healthy.json)")
    group.add_argument("--workers", default=1, type=int, help="loader worker processes per stream and process")
    group.add_argument("--cache_num", default=1000, type=int, help="cases cached per stream (deterministic prefix)")
    cli.add_preprocessing_arguments(parser)

    group = parser.add_argument_group("generator and losses (FreeTumor's weights by default)")
    group.add_argument("--segmentor", default=None, metavar="CKPT",
                       help="frozen segmentor trained on real tumors (a main.py checkpoint), for the segmentor term; "
                            "required unless --seg_weight 0")
    group.add_argument("--adv_weight", default=0.1, type=float, help="weight of the adversarial term")
    group.add_argument("--seg_weight", default=1.0, type=float, help="weight of the segmentor term")
    group.add_argument("--max_offset_hu", default=150.0, type=float, help="bound of the generator's offset in HU")
    group.add_argument("--gen_channels", default=[16, 32, 64], type=int, nargs="+",
                       help="feature channels per UNet level of the generator and the discriminator")

    group = parser.add_argument_group("optimization")
    group.add_argument("--max_epochs", default=100, type=int,
                       help="epochs; one epoch is one pass over the healthy cases (steps = cases / batch size)")
    group.add_argument("--batch_size", default=2, type=int, help="crops per stream, step and process")
    group.add_argument("--lr", default=2e-4, type=float, help="Adam learning rate of both networks (betas 0.5, 0.999)")
    group.add_argument("--seed", default=0, type=int, help="seed of the initialisation, data order and augmentation")
    cli.add_device_arguments(parser)

    group = parser.add_argument_group("output")
    group.add_argument("--logdir", required=True, help=f"where {GENERATOR_FILE} and the TensorBoard events go")
    group.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                       help=f"continue from PATH, or without PATH from <logdir>/{GENERATOR_FILE} when it exists")
    group.add_argument("--preview_every", default=10, type=int, help="TensorBoard preview slices every N epochs")
    return parser


@interrupt.exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    try:
        device = resolve_device(args.device)
        settings, config = complete_args(args)
        datalists = load_datalists(args)
        args.resume = resolve_resume(args)
        if args.segmentor is not None:  # readable and made for these crops: before any caching
            load_qc_segmentor(args.segmentor, settings, torch.device("cpu"))
    except (DatalistError, CheckpointError, SettingsError, ValueError) as e:
        if env_rank() == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    if env_rank() == 0:
        remove_stale_temp_files(args.logdir)
    plan = plan_launch(False, device.type, 1, 0, "")
    launch(_worker, plan, args, settings, config, datalists, device)


def complete_args(args: argparse.Namespace) -> tuple[RunSettings, GeneratorConfig]:
    if args.max_epochs < 1 or args.batch_size < 1:
        raise ValueError("--max_epochs and --batch_size must be at least 1")
    if args.adv_weight < 0 or args.seg_weight < 0:
        raise ValueError("--adv_weight and --seg_weight must be >= 0")
    if args.seg_weight > 0 and args.segmentor is None:
        raise ValueError("the segmentor term needs --segmentor CKPT (a main.py model trained on real tumors), "
                         "or --seg_weight 0 to train without it")
    if args.segmentor is not None and not Path(args.segmentor).is_file():
        raise CheckpointError(f"--segmentor file not found: {args.segmentor}")
    root = Path(args.train_dir)
    args.json_dir = args.json_dir or str(root / "datafolds" / "lits.json")
    args.healthy_json = args.healthy_json or str(root / "datafolds" / "healthy.json")
    settings = RunSettings.create(organ=args.organ, a_min=args.a_min, a_max=args.a_max,
                                  spacing=(args.space_x, args.space_y, args.space_z),
                                  roi=(args.roi_x, args.roi_y, args.roi_z))
    profile = settings.profile
    signs = {m.intensity_sign for m in profile.members}
    if len(signs) != 1:
        raise ValueError(f"--organ {args.organ}: its organs' tumors are not all darker or all brighter")
    config = GeneratorConfig(organ=settings.organ, window=settings.window, spacing=settings.spacing,
                             sign=signs.pop(), max_offset_hu=args.max_offset_hu, channels=tuple(args.gen_channels),
                             roi=settings.roi)
    if any(r % config.divisor for r in settings.roi):
        raise ValueError(f"--roi_x/y/z {settings.roi} must be multiples of {config.divisor} "
                         f"({len(config.channels)} UNet levels)")
    args.a_min, args.a_max = settings.window
    return settings, config


def load_datalists(args: argparse.Namespace) -> dict[str, list[dict]]:
    lists = {}
    for stream, path in (("real", args.json_dir), ("healthy", args.healthy_json)):
        items = load_datalist(path, "training", args.train_dir)
        if not items:
            raise DatalistError(f"datalist {path} has an empty 'training' list ({stream} cases)")
        check_datalist_files(items, what=f"training list of {path}")
        lists[stream] = items
    return lists


def resolve_resume(args: argparse.Namespace) -> str | None:
    if args.resume is None:
        return None
    path = Path(args.logdir) / GENERATOR_FILE if args.resume == "auto" else Path(args.resume)
    if path.is_file():
        return str(path)
    if args.resume != "auto":
        raise CheckpointError(f"--resume checkpoint not found: {path}")
    print0(None, f"--resume: {path} does not exist yet, starting a fresh run")
    return None


def _worker(local_rank: int, plan, args, settings, config, datalists, device) -> None:
    ctx = init_distributed(plan, local_rank, device, "nccl")
    amp = device.type == "cuda" and not args.noamp
    print0(ctx, f"device {ctx.device}, {ctx.world_size} process(es); " + ("mixed precision (AMP)" if amp else "fp32"))
    try:
        with interrupt.training_phase():
            GeneratorTraining(args, settings, config, datalists, ctx, amp).run()
    except CheckpointError as e:
        print0(ctx, f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except interrupt.TrainingStopped as e:
        print0(ctx, e.message(args.logdir, True, GENERATOR_FILE), file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    finally:
        cleanup(ctx)


class GeneratorTraining:
    """The adversarial loop: per step one discriminator update, then one generator update."""

    def __init__(self, args, settings: RunSettings, config: GeneratorConfig, datalists, ctx: DistContext,
                 amp: bool) -> None:
        self.args, self.settings, self.config, self.ctx, self.amp = args, settings, config, ctx, amp
        self.device = ctx.device
        self.tumor_labels = [t for _, _, _, t in settings.label_pairs]
        self.real_loader, self.healthy_loader = self._loaders(datalists)
        torch.manual_seed(args.seed)  # same initial weights on every rank
        self.generator = TumorGenerator(config).to(self.device)
        self.discriminator = build_discriminator(config.channels).to(self.device)
        self.segmentor = None
        if args.segmentor is not None:
            self.segmentor = load_qc_segmentor(args.segmentor, settings, self.device).eval()
            for p in self.segmentor.parameters():
                p.requires_grad_(False)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=args.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=args.lr, betas=(0.5, 0.999))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp)
        self.g_ddp, self.d_ddp = self.generator, self.discriminator
        if ctx.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_ddp = torch.nn.parallel.DistributedDataParallel(self.generator, device_ids=ids)
            self.d_ddp = torch.nn.parallel.DistributedDataParallel(self.discriminator, device_ids=ids)
        self.start_epoch, self.global_step = 0, 0
        self.logdir = Path(args.logdir)
        self.writer = ScalarWriter(self.logdir) if ctx.is_main else None
        if args.resume:
            self.restore(load_checkpoint(args.resume))
            print0(ctx, f"resumed from {args.resume}: continuing at epoch {self.start_epoch}")

    def _loaders(self, datalists):
        preprocessing = self.settings.preprocessing()
        real = get_transforms("train", **preprocessing, roi_size=self.settings.roi, organ=self.settings.organ,
                              tumor_centred=True)
        healthy = get_transforms("train", **preprocessing, roi_size=self.settings.roi, organ=self.settings.organ,
                                 syn=True, syn_prob=1.0, keep_healthy=True, tumor_centred=True)
        loaders = []
        for stream, transform in (("real", real), ("healthy", healthy)):
            dataset = build_train_dataset(datalists[stream], transform, self.args.cache_num, 1.0, self.args.workers,
                                          progress=self.ctx.is_main)
            loaders.append(build_train_loader(dataset, self.args.batch_size, self.args.workers, self.ctx,
                                              seed=self.args.seed))
        print0(self.ctx, f"{len(datalists['real'])} real tumor cases, {len(datalists['healthy'])} healthy cases "
                         f"(engine tumors repainted by the generator)")
        return loaders

    # --------------------------------------------------------------- state
    def state(self, epoch: int) -> dict:
        return {
            "kind": GENERATOR_KIND,
            "generator_config": self.config.to_dict(),
            "state_dict": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "optimizer_d": self.opt_d.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "global_step": self.global_step,
            "settings": self.settings.to_dict(),
            "args": vars(self.args).copy(),
        }

    def restore(self, checkpoint: dict) -> None:
        if checkpoint.get("kind") != GENERATOR_KIND:
            raise CheckpointError(f"--resume {self.args.resume} is not a generator checkpoint of syn_train.py")
        saved = checkpoint.get("args") or {}
        changed = [f"--{k} {saved[k]!r} -> {getattr(self.args, k)!r}" for k in RESUME_SENSITIVE_FLAGS
                   if k in saved and saved[k] != getattr(self.args, k)]
        if changed:
            print0(self.ctx, "note: resuming with flags that differ from the checkpoint's run: " + ", ".join(changed))
        try:
            self.generator.load_state_dict(checkpoint["state_dict"])
            self.discriminator.load_state_dict(checkpoint["discriminator"])
        except RuntimeError as e:
            raise CheckpointError(f"--resume {self.args.resume} does not fit this generator: {e}") from None
        self.opt_g.load_state_dict(checkpoint["optimizer_g"])
        self.opt_d.load_state_dict(checkpoint["optimizer_d"])
        if checkpoint.get("scaler"):
            self.scaler.load_state_dict(checkpoint["scaler"])
        self.start_epoch = int(checkpoint["epoch"]) + 1
        self.global_step = int(checkpoint.get("global_step", 0))

    def save(self, epoch: int) -> None:
        if self.ctx.is_main:
            save_checkpoint(self.logdir / GENERATOR_FILE, **self.state(epoch))
        barrier(self.ctx)

    # --------------------------------------------------------------- loop
    def run(self) -> None:
        for epoch in range(self.start_epoch, self.args.max_epochs):
            prepare_epoch(self.healthy_loader, epoch, self.args.seed, self.ctx.rank)
            sums = self.train_epoch(epoch)
            steps = max(sums.pop("steps"), 1.0)
            scalars = {f"generator/{k}": v / steps for k, v in sums.items()}
            print0(self.ctx, f"epoch {epoch}: " + "  ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in scalars.items()))
            if self.writer is not None:
                self.writer.add_scalars(scalars, step=epoch)
            self.save(epoch)
            interrupt.stop_if_requested(self.ctx, epoch + 1)
        if self.writer is not None:
            self.writer.close()
        print0(self.ctx, f"generator: {self.logdir / GENERATOR_FILE}")

    def _real_batches(self, epoch: int) -> Iterator[dict]:
        """Real-tumor crops, cycling: each pass reseeded from (seed, rank, epoch, pass) only."""
        for k in range(1 << 20):
            prepare_epoch(self.real_loader, epoch * 1024 + k, self.args.seed + 1, self.ctx.rank)
            yield from self.real_loader

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.generator.train()
        self.discriminator.train()
        sums = {"loss_d": 0.0, "loss_g": 0.0, "adversarial": 0.0, "segmentor": 0.0, "steps": 0.0}
        real_batches = self._real_batches(epoch)
        bar = tqdm(self.healthy_loader, desc=f"epoch {epoch}", disable=not self.ctx.is_main, dynamic_ncols=True)
        last = None
        for step, batch in enumerate(bar):
            real = next(real_batches)
            loss_d, loss_g, terms, last = self.train_step(real, batch)
            self.global_step += 1
            after_step(loss_d + loss_g, batch, epoch, step + 1, self.global_step, self.ctx)
            sums["loss_d"] += loss_d
            sums["loss_g"] += loss_g
            for k, v in terms.items():
                sums[k] += v
            sums["steps"] += 1
            bar.set_postfix_str(f"D {loss_d:.3f} G {loss_g:.3f}")
        bar.close()
        keys = list(sums)
        totals = all_reduce_sum([sums[k] for k in keys], self.ctx)
        if self.writer is not None and last is not None and epoch % self.args.preview_every == 0:
            self.writer.add_image("generator/preview", preview_slice(*last), step=epoch)
        return dict(zip(keys, totals))

    def train_step(self, real: dict, batch: dict):
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
        for p in self.discriminator.parameters():
            p.requires_grad_(False)
        try:
            with autocast:
                disc = self.discriminator(painted)
                seg = self.segmentor(painted) if self.segmentor is not None else None
            loss_g, terms = generator_loss(disc, seg, label, mask, self.args.adv_weight, self.args.seg_weight)
            self.scaler.scale(loss_g).backward()
        finally:
            for p in self.discriminator.parameters():
                p.requires_grad_(True)
        self.scaler.step(self.opt_g)
        self.scaler.update()
        preview = (healthy[0, 0].detach(), engine_image[0, 0].detach(), painted[0, 0].detach(), mask[0, 0])
        return loss_d.item(), loss_g.item(), terms, preview


def preview_slice(healthy: torch.Tensor, engine: torch.Tensor, painted: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """(H, 3W) image in [0, 1]: healthy | engine | generator, on the axial slice with most tumor."""
    z = int(mask.flatten(0, 1).sum(0).argmax()) if bool(mask.any()) else mask.shape[-1] // 2
    row = torch.cat([healthy[..., z], engine[..., z], painted[..., z]], dim=0)
    return row.float().clamp(0, 1).T.flip(0).cpu()  # x to the right, y up (radiological display)


if __name__ == "__main__":
    main()
