"""Train the tumor painter of ``main.py --synthesis gan`` (FreeTumor) or ``--synthesis diffusion``.

``--model gan`` (the default): two streams of crops per step, both from the project's training pipeline: crops of *real*
tumor cases, centred on their tumors (``--json_dir``), and crops of *healthy* cases with the
engine's ellipsoid tumors, carrying their healthy original (``--healthy_json``). The generator
repaints the engine's tumors (``tumor_synthesis.learned``); a voxel-wise discriminator learns
background / real tumor / synthetic tumor; the generator learns to make its voxels look real to
the discriminator and tumor to a frozen segmentor trained on real tumors (``--segmentor``, any
``model.pt`` main.py wrote without --syn). Writes ``<logdir>/generator.pt``.

``--model diffusion``: one stream, the real tumor crops (``--json_dir``); a conditional
inpainting model on MONAI's ``DiffusionModelUNet`` learns the tumor's intensities given its
healthy surroundings and its mask (rectified flow, ``tumor_synthesis.diffusion``). Writes
``<logdir>/diffusion.pt``.

    python syn_train.py --train_dir data/phantom --segmentor runs/real/model.pt --logdir runs/generator
    python syn_train.py --model diffusion --train_dir data/phantom --logdir runs/diffusion
    torchrun --nproc_per_node 2 syn_train.py ...        # DDP, gloo on CPU, NCCL on GPUs

The model file is written atomically after every epoch (full state: ``--resume`` continues it;
``main.py --syn_generator`` reads the model from it and checks its kind) with TensorBoard events
(losses per epoch, and preview slices: healthy | engine | generator, or real | blanked | sampled).

This module parses and checks the command line and launches the processes; the training
loops are :class:`labelfree.training.generator_training.GeneratorTrainer` and
:class:`labelfree.training.diffusion_training.DiffusionTrainer`.
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
from labelfree.io.output_dir import check_output_dir
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
from labelfree.training.diffusion_training import DiffusionOptions, DiffusionTrainer
from labelfree.training.generator import LEARNED_MODELS
from labelfree.training.generator_training import GeneratorOptions, GeneratorTrainer
from labelfree.training.quality_control import load_qc_segmentor
from tumor_synthesis.diffusion import DiffusionConfig
from tumor_synthesis.learned import GeneratorConfig

#: Default learning rate per --model: FreeTumor's for the adversarial pair; AdamW's usual for the diffusion UNet.
DEFAULT_LR = {"gan": 2e-4, "diffusion": 1e-3}
#: Flags of the adversarial model only, with their defaults (None in the parser: given or not is told apart).
GAN_ONLY = {"segmentor": None, "adv_weight": 0.1, "seg_weight": 1.0}
#: Flags of the diffusion model only, with their defaults.
DIFFUSION_ONLY = {"steps_per_epoch": 50, "syn_steps": 10}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=cli.HelpFormatter)
    parser.add_argument("--model", default="gan", choices=tuple(LEARNED_MODELS),
                        help="gan: FreeTumor's adversarial generator (generator.pt; main.py --synthesis gan); "
                             "diffusion: a conditional inpainting diffusion model (diffusion.pt; main.py --synthesis "
                             "diffusion)")
    group = parser.add_argument_group("data")
    group.add_argument("--train_dir", default="data/phantom",
                       help="data root the datalists' paths are relative to (default: the phantom root)")
    group.add_argument("--json_dir", default=None,
                       help="datalist of REAL tumor cases, its 'training' list (default <train_dir>/datafolds/lits.json)")
    group.add_argument("--healthy_json", default=None,
                       help="datalist of healthy cases the engine paints (default <train_dir>/datafolds/healthy.json; "
                            "--model gan only)")
    group.add_argument("--workers", default=1, type=int, help="loader worker processes per stream and process")
    group.add_argument("--cache_num", default=1000, type=int, help="cases cached per stream (deterministic prefix)")
    cli.add_preprocessing_arguments(parser)

    group = parser.add_argument_group("model and losses (FreeTumor's weights by default)")
    group.add_argument("--segmentor", default=None, metavar="CKPT",
                       help="--model gan: frozen segmentor trained on real tumors (a main.py checkpoint), for the "
                            "segmentor term; required unless --seg_weight 0")
    group.add_argument("--adv_weight", default=None, type=float,
                       help=f"--model gan: weight of the adversarial term (default {GAN_ONLY['adv_weight']})")
    group.add_argument("--seg_weight", default=None, type=float,
                       help=f"--model gan: weight of the segmentor term (default {GAN_ONLY['seg_weight']})")
    group.add_argument("--max_offset_hu", default=150.0, type=float,
                       help="bound of the painted change in HU (the organ profile's sign: darker or brighter)")
    group.add_argument("--gen_channels", default=[16, 32, 64], type=int, nargs="+",
                       help="feature channels per UNet level of the generator and the discriminator, or of the "
                            "diffusion UNet (multiples of 8)")
    group.add_argument("--syn_steps", default=None, type=int,
                       help=f"--model diffusion: sampling steps the model file records as its default (main.py "
                            f"--syn_steps overrides it) and the previews use (default {DIFFUSION_ONLY['syn_steps']})")

    group = parser.add_argument_group("optimization")
    group.add_argument("--max_epochs", default=100, type=int,
                       help="epochs; gan: one epoch is one pass over the healthy cases (steps = cases / batch size); "
                            "diffusion: --steps_per_epoch steps over the real crops")
    group.add_argument("--steps_per_epoch", default=None, type=int,
                       help=f"--model diffusion: optimizer steps per epoch and checkpoint "
                            f"(default {DIFFUSION_ONLY['steps_per_epoch']})")
    group.add_argument("--batch_size", default=2, type=int, help="crops per stream, step and process")
    group.add_argument("--lr", default=None, type=float,
                       help=f"learning rate: gan, Adam of both networks (betas 0.5, 0.999; default {DEFAULT_LR['gan']}); "
                            f"diffusion, AdamW (default {DEFAULT_LR['diffusion']})")
    group.add_argument("--seed", default=0, type=int, help="seed of the initialisation, data order and augmentation")
    cli.add_device_arguments(parser)

    group = parser.add_argument_group("output")
    group.add_argument("--logdir", required=True,
                       help="where the model file (generator.pt or diffusion.pt) and the TensorBoard events go")
    group.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                       help="continue from PATH, or without PATH from the model file in --logdir when it exists")
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
def prepare(args: argparse.Namespace) -> tuple[torch.device, RunSettings, GeneratorConfig | DiffusionConfig,
                                               dict[str, list[dict]]]:
    """Every check of the command line and its files, before any caching or file in the logdir."""
    device = resolve_device(args.device)
    settings, config = complete_args(args)
    check_output_dir(args.logdir, "--logdir")  # can be created and written: told before any data is read
    datalists = load_datalists(args)
    args.resume = resolve_resume(args)
    if args.segmentor is not None:  # readable and made for these crops
        load_qc_segmentor(args.segmentor, settings, torch.device("cpu"), what="--segmentor")
    return device, settings, config, datalists


def model_flags(args: argparse.Namespace) -> None:
    """Refuse the other model's flags (they would do nothing); fill in this model's defaults."""
    own, other = (GAN_ONLY, DIFFUSION_ONLY) if args.model == "gan" else (DIFFUSION_ONLY, GAN_ONLY)
    given = [f"--{name}" for name in other if getattr(args, name) is not None]
    if given:
        raise ValueError(f"{', '.join(given)} belong(s) to the other model: drop it with --model {args.model}")
    for name, default in own.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.lr is None:
        args.lr = DEFAULT_LR[args.model]


def complete_args(args: argparse.Namespace) -> tuple[RunSettings, GeneratorConfig | DiffusionConfig]:
    if args.max_epochs < 1 or args.batch_size < 1:
        raise ValueError("--max_epochs and --batch_size must be at least 1")
    model_flags(args)
    if args.model == "diffusion":
        return complete_diffusion_args(args)
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
    settings, sign = crop_settings(args)
    config = GeneratorConfig(organ=settings.organ, window=settings.window, spacing=settings.spacing,
                             sign=sign, max_offset_hu=args.max_offset_hu, channels=tuple(args.gen_channels),
                             roi=settings.roi)
    if any(r % config.divisor for r in settings.roi):
        raise ValueError(f"--roi_x/y/z {settings.roi} must be multiples of {config.divisor} "
                         f"({len(config.channels)} UNet levels)")
    args.a_min, args.a_max = settings.window
    return settings, config


def crop_settings(args: argparse.Namespace) -> tuple[RunSettings, int]:
    """The crops' settings and the organ profile's intensity sign (-1 darker tumors, +1 brighter)."""
    settings = RunSettings.create(organ=args.organ, a_min=args.a_min, a_max=args.a_max,
                                  spacing=(args.space_x, args.space_y, args.space_z),
                                  roi=(args.roi_x, args.roi_y, args.roi_z))
    signs = {m.intensity_sign for m in settings.profile.members}
    if len(signs) != 1:
        raise ValueError(f"--organ {args.organ}: its organs' tumors are not all darker or all brighter")
    return settings, signs.pop()


def complete_diffusion_args(args: argparse.Namespace) -> tuple[RunSettings, DiffusionConfig]:
    if args.steps_per_epoch < 1:
        raise ValueError(f"--steps_per_epoch must be at least 1, got {args.steps_per_epoch}")
    root = Path(args.train_dir)
    args.json_dir = args.json_dir or str(root / "datafolds" / "lits.json")
    if args.healthy_json is not None:
        raise ValueError("--healthy_json is the gan's second stream: --model diffusion learns from the real tumor "
                         "cases (--json_dir) only")
    settings, sign = crop_settings(args)
    config = DiffusionConfig(organ=settings.organ, window=settings.window, spacing=settings.spacing, sign=sign,
                             max_offset_hu=args.max_offset_hu, channels=tuple(args.gen_channels), roi=settings.roi,
                             steps=args.syn_steps)  # raises on channels, crop size or steps that cannot work
    args.a_min, args.a_max = settings.window
    return settings, config


def load_datalists(args: argparse.Namespace) -> dict[str, list[dict]]:
    lists = {}
    streams = (("real", args.json_dir),) + ((("healthy", args.healthy_json),) if args.model == "gan" else ())
    for stream, path in streams:
        items = load_datalist(path, "training", args.train_dir)
        if not items:
            raise DatalistError(f"datalist {path} has an empty 'training' list ({stream} cases)")
        check_datalist_files(items, what=f"training list of {path}")
        lists[stream] = items
    return lists


def resolve_resume(args: argparse.Namespace) -> str | None:
    if args.resume is None:
        return None
    model_file = LEARNED_MODELS[args.model][3]
    path = Path(args.logdir) / model_file if args.resume == "auto" else Path(args.resume)
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
            trainer = build_trainer(args, settings, config, datalists, ctx, amp)
            if args.resume:
                trainer.resume(args.resume, USES["generator_resume"], vars(args))
            trainer.run()
    except interrupt.TrainingStopped as e:
        print0(ctx, e.message(args.logdir, True, LEARNED_MODELS[args.model][3]), file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    finally:
        cleanup(ctx)


def build_trainer(args, settings, config, datalists, ctx, amp) -> GeneratorTrainer | DiffusionTrainer:
    if args.model == "diffusion":
        return DiffusionTrainer(settings, config, datalists["real"], ctx, amp, DiffusionOptions(
            max_epochs=args.max_epochs, steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, lr=args.lr,
            seed=args.seed, workers=args.workers, cache_num=args.cache_num, preview_every=args.preview_every,
            logdir=Path(args.logdir), args=vars(args).copy()))
    return GeneratorTrainer(settings, config, datalists, ctx, amp, GeneratorOptions(
        max_epochs=args.max_epochs, batch_size=args.batch_size, lr=args.lr, adv_weight=args.adv_weight,
        seg_weight=args.seg_weight, seed=args.seed, workers=args.workers, cache_num=args.cache_num,
        preview_every=args.preview_every, logdir=Path(args.logdir), segmentor=args.segmentor,
        args=vars(args).copy()))


if __name__ == "__main__":
    main()
