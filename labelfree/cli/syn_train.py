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

This module parses and checks the command line and launches the processes; the training
loop is :class:`labelfree.training.generator_training.GeneratorTrainer`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from labelfree.config import flags as cli
from labelfree.config.settings import RunSettings, SettingsError
from labelfree.data.datalist import DatalistError, check_datalist_files, load_datalist
from labelfree.io.atomic import remove_stale_temp_files
from labelfree.io.checkpoint import USES, CheckpointError
from labelfree.runtime import interrupt
from labelfree.runtime.cli_errors import exits_on
from labelfree.runtime.distributed import (
    cleanup,
    env_rank,
    init_distributed,
    launch,
    plan_launch,
    print0,
    resolve_device,
)
from labelfree.training.generator import GENERATOR_FILE
from labelfree.training.generator_training import GeneratorOptions, GeneratorTrainer
from labelfree.training.quality_control import load_qc_segmentor
from tumor_synthesis.learned import GeneratorConfig


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
    device, settings, config, datalists = prepare(args)
    if env_rank() == 0:
        remove_stale_temp_files(args.logdir)
    plan = plan_launch(False, device.type, 1, 0, "")
    launch(_worker, plan, args, settings, config, datalists, device)


@exits_on(DatalistError, CheckpointError, SettingsError, ValueError)
def prepare(args: argparse.Namespace) -> tuple[torch.device, RunSettings, GeneratorConfig, dict[str, list[dict]]]:
    """Every check of the command line and its files, before any caching or file in the logdir."""
    device = resolve_device(args.device)
    settings, config = complete_args(args)
    datalists = load_datalists(args)
    args.resume = resolve_resume(args)
    if args.segmentor is not None:  # readable and made for these crops
        load_qc_segmentor(args.segmentor, settings, torch.device("cpu"), what="--segmentor")
    return device, settings, config, datalists


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


@exits_on(CheckpointError)
def _worker(local_rank: int, plan, args, settings, config, datalists, device) -> None:
    ctx = init_distributed(plan, local_rank, device, "nccl")
    amp = device.type == "cuda" and not args.noamp
    print0(ctx, f"device {ctx.device}, {ctx.world_size} process(es); " + ("mixed precision (AMP)" if amp else "fp32"))
    try:
        with interrupt.training_phase():
            trainer = GeneratorTrainer(settings, config, datalists, ctx, amp, GeneratorOptions(
                max_epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr, adv_weight=args.adv_weight,
                seg_weight=args.seg_weight, seed=args.seed, workers=args.workers, cache_num=args.cache_num,
                preview_every=args.preview_every, logdir=Path(args.logdir), segmentor=args.segmentor,
                args=vars(args).copy()))
            if args.resume:
                trainer.resume(args.resume, USES["generator_resume"], vars(args))
            trainer.run()
    except interrupt.TrainingStopped as e:
        print0(ctx, e.message(args.logdir, True, GENERATOR_FILE), file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    finally:
        cleanup(ctx)


if __name__ == "__main__":
    main()
