"""Train a tumor segmentation network, optionally on healthy scans with synthetic tumors.

The original project's command line runs unchanged, e.g.::

    python -W ignore main.py --optim_lr=4e-4 --batch_size=2 --lrschedule=warmup_cosine \\
        --optim_name=adamw --model_name=unet --val_every=200 --max_epochs=4000 --save_checkpoint \\
        --workers=2 --noamp --distributed --dist-url=tcp://127.0.0.1:12345 --cache_num=200 \\
        --val_overlap=0.5 --syn --logdir=runs/synt.no_pretrain.unet0 \\
        --train_dir data/phantom --val_dir data/phantom --json_dir datafolds/healthy.json

Multi-GPU: ``torchrun --nproc_per_node=4 main.py ...`` (or the original's ``--distributed``);
multi-node: ``torchrun --nnodes=2 --node_rank=... --rdzv_endpoint=host:port ...``.
A killed job continues where it stopped with the same command plus ``--resume``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from monai.losses import DiceCELoss

from labelfree.config import flags as cli
from labelfree.config.settings import RunSettings, SettingsError
from labelfree.config.synthesis import LEARNED_SYNTHESIS, check_synthesis_args
from labelfree.data import preflight
from labelfree.data.datalist import DatalistError, check_datalist_files, load_datalist
from labelfree.data.loaders import (
    build_train_dataset,
    build_train_loader,
    build_val_loader,
    with_case_index,
)
from labelfree.data.transforms import get_transforms
from labelfree.inference.roi import add_roi_arguments, build_inferer
from labelfree.io.atomic import remove_stale_temp_files
from labelfree.io.output_dir import check_output_dir
from labelfree.io.checkpoint import (
    CHECKPOINT_BEST,
    CHECKPOINT_FINAL,
    USES,
    CheckpointError,
    load_model_weights,
)
from labelfree.networks import check_model_args, load_swinvit_weights
from labelfree.optimizers import (
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    build_optimizer,
    build_scheduler,
)
from labelfree.runtime import interrupt
from labelfree.runtime.cli_errors import exits_on
from labelfree.runtime.distributed import (
    DistContext,
    LaunchPlan,
    cleanup,
    env_rank,
    init_distributed,
    launch,
    plan_launch,
    print0,
    resolve_device,
)
from labelfree.training.generator import load_learned_synthesis, read_generator
from labelfree.training.quality_control import DEFAULT_THRESHOLD as DEFAULT_QC_THRESHOLD
from labelfree.training.quality_control import SyntheticTumorQC, load_qc_segmentor
from labelfree.training.trainer import Trainer, TrainerConfig


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train a 3D CT segmentation network (organ + tumor), optionally with synthetic tumors "
        "painted on the fly into healthy scans (--syn).",
        formatter_class=cli.HelpFormatter,
    )
    cli.add_data_arguments(parser)
    group = parser.add_argument_group("training data")
    group.add_argument("--syn", action="store_true",
                       help="paint synthetic tumors into the organ of each training case on every draw "
                            "(train on healthy scans)")
    group.add_argument("--syn_rim_mm", default=None, type=float,
                       help="with --syn: keep this much organ tissue (mm) between a synthetic tumor and the organ's "
                            "surface (default 0, the original: tumors are clipped at the surface, and one at the edge "
                            "merges with the muscle or fluid next to the organ; 3 is what the phantom experiment uses)")
    group.add_argument("--syn_qc", default=None, type=str, metavar="CKPT",
                       help="with --syn: quality control as FreeTumor: a frozen segmentor (a main.py checkpoint "
                            "trained on real tumors, same organ, window and spacing) checks every synthetic crop in "
                            "the training step; a crop keeps its synthetic tumors only when the segmentor labels more "
                            "than --syn_qc_threshold of their voxels as tumor, else it reverts to its healthy original")
    group.add_argument("--syn_qc_threshold", default=None, type=float,
                       help="with --syn_qc: minimum recognised fraction of the synthetic tumor voxels (default 0.7)")
    # Synthesis model (tumor_synthesis.TumorGenerated's ``synthesis``); kept in the checkpoint's args.
    group.add_argument("--synthesis", default="ellipsoid", choices=("ellipsoid", "growth") + LEARNED_SYNTHESIS,
                       help="with --syn: the original's deformed ellipsoids, tumors grown by a cellular automaton "
                            "(Pixel2Cancer's growth model; liver, pancreas, kidney, multi), or the ellipsoids "
                            "repainted by a trained generator in the training step (FreeTumor; needs --syn_generator), "
                            "or by a trained diffusion model (diffusion; needs --syn_generator)")
    group.add_argument("--syn_generator", default=None, type=str, metavar="PATH",
                       help="with --synthesis gan or diffusion: the model file syn_train.py wrote (generator.pt with "
                            "--model gan, diffusion.pt with --model diffusion) for this run's organ, window and spacing")
    group.add_argument("--syn_steps", default=None, type=int,
                       help="with --synthesis diffusion: sampling steps per painted window (default: the model "
                            "file's, 10; fewer is faster, e.g. 4)")
    group.add_argument("--syn_grid_mm", default=None, type=float,
                       help="with --synthesis growth: spacing (mm) of the growth simulation grid (default 2; the "
                            "published model: 1, about 10 times slower)")
    group.add_argument("--syn_device", default="loader", choices=("loader", "cuda"),
                       help="with --syn: where synthesis and the augmentations after it run: in the loader (its "
                            "workers, on the CPU) or on this process's GPU in the training step (needs --workers 0)")
    group.add_argument("--syn_label_edge", default=None, type=float, metavar="FRACTION",
                       help="with --syn: label each synthetic tumor out to where its blurred edge falls to this "
                            "fraction (e.g. 0.2), so the label ends where the visible lesion does (default off: the "
                            "original labels the unblurred mask and the darkening spreads past it; see "
                            "python -m tumor_synthesis.realism)")
    cli.add_syn_preset_argument(group)
    group.add_argument("--cache_num", default=500, type=int,
                       help="cache the preprocessed (loaded, oriented, resampled) training cases, at most this many; "
                            "the rest are preprocessed on every draw (the original's cache never rotated, so cases "
                            "beyond it were never used)")
    group.add_argument("--cache_rate", default=1.0, type=float,
                       help="fraction of the training cases to cache (the smaller of this and --cache_num applies)")
    group.add_argument("--workers", default=4, type=int,
                       help="DataLoader worker processes per training process (also used to build the cache)")
    cli.add_preprocessing_arguments(parser)
    cli.add_model_arguments(parser)
    group = parser.add_argument_group("pretrained / initial weights")
    group.add_argument("--use_pretrained", action="store_true",
                       help="initialise the Swin-UNETR encoder from self-supervised Swin-ViT weights (--pretrained_swinvit)")
    group.add_argument("--pretrained_swinvit", default="model_swinvit.pt", type=str,
                       help="file of the self-supervised Swin-ViT weights used by --use_pretrained")
    group.add_argument("--checkpoint", default=None, type=str,
                       help="initialise the model weights from this checkpoint ('module.'/'backbone.' prefixes "
                            "stripped); weights only, the epoch count starts at 0 (use --resume to continue a run)")
    group.add_argument("--resume_ckpt", action="store_true",
                       help="original flag: load model weights from --pretrained_dir (weights only, like --checkpoint)")
    group.add_argument("--pretrained_dir", default=None, type=str,
                       help=f"checkpoint file for --resume_ckpt; a directory means its {CHECKPOINT_BEST}")

    group = parser.add_argument_group("optimization")
    group.add_argument("--max_epochs", default=5000, type=int, help="number of training epochs")
    group.add_argument("--batch_size", default=1, type=int, help="patches per optimizer step and process")
    group.add_argument("--optim_lr", default=1e-4, type=float, help="base learning rate")
    group.add_argument("--optim_name", default="adamw", choices=OPTIMIZER_NAMES,
                       help="optimizer (sgd: momentum 0.99, Nesterov)")
    group.add_argument("--reg_weight", default=1e-5, type=float, help="weight decay")
    group.add_argument("--lrschedule", default="warmup_cosine", choices=SCHEDULE_NAMES,
                       help="per-epoch learning-rate schedule (warmup_cosine: linear warm-up from 0, then cosine to 0)")
    group.add_argument("--warmup_epochs", default=100, type=int, help="epochs of linear warm-up (warmup_cosine)")
    group.add_argument("--seed", default=0, type=int,
                       help="seed of the model initialisation, data order and augmentation (per epoch and rank)")
    group.add_argument("--max_steps_per_epoch", default=0, type=int,
                       help="end each epoch after this many optimizer steps (0: the whole training set; for smoke tests)")
    cli.add_device_arguments(parser)

    group = parser.add_argument_group("validation during training")
    group.add_argument("--val_every", default=1, type=int,
                       help="validate after every N-th epoch (and after the last one)")
    cli.add_inference_arguments(parser)
    add_roi_arguments(parser)

    group = parser.add_argument_group("output")
    group.add_argument("--logdir", default=None, type=str,
                       help="directory of the TensorBoard events and checkpoints (without it nothing is written)")
    group.add_argument("--save_checkpoint", action="store_true",
                       help=f"write {CHECKPOINT_FINAL} (every epoch) and {CHECKPOINT_BEST} (best val_mean_dice) "
                            "to --logdir; needed for --resume")
    group.add_argument("--resume", nargs="?", const="auto", default=None, metavar="PATH",
                       help=f"continue a run: full state (weights, optimizer, schedule, epoch) from PATH, or "
                            f"without PATH from <logdir>/{CHECKPOINT_FINAL} when it exists (fresh start otherwise)")
    group.add_argument("--log_case_indices", action="store_true",
                       help="record the datalist indices each rank trained on per epoch in <logdir>/case_indices.jsonl")

    group = parser.add_argument_group("bad input")
    group.add_argument("--skip_bad_cases", action="store_true",
                       help="leave out the cases that fail the check before training (one warning each) instead of "
                            "stopping; refused when no training case remains")

    group = parser.add_argument_group("distributed (torchrun sets all of this itself)")
    group.add_argument("--distributed", action="store_true",
                       help="without torchrun: start one process per visible GPU (one gloo process without a GPU)")
    group.add_argument("--dist-url", default="tcp://127.0.0.1:23456", type=str,
                       help="rendezvous address of the --distributed launch")
    group.add_argument("--dist-backend", default="nccl", type=str,
                       help="process-group backend on GPUs (CPU always uses gloo)")
    group.add_argument("--world_size", default=1, type=int,
                       help="number of nodes of a multi-node --distributed launch (one main.py per node)")
    group.add_argument("--rank", default=0, type=int, help="this node's index in a multi-node --distributed launch")
    return parser


@interrupt.exits_cleanly
def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    device, settings, datalists = prepare(args)
    if env_rank() == 0:
        remove_stale_temp_files(args.logdir)  # of atomic writes a SIGKILL interrupted
    plan = plan_launch(args.distributed, device.type, args.world_size, args.rank, args.dist_url)
    if plan.mode == "spawn" and device.type == "cpu":
        print0(None, f"--distributed without a GPU: one gloo process per node ({plan.world_size} in all)")
    launch(main_worker, plan, args, settings, datalists, device)


@exits_on(DatalistError, CheckpointError, SettingsError, ValueError, RuntimeError, ImportError)
def prepare(args: argparse.Namespace) -> tuple[torch.device, RunSettings, dict[str, list[dict]]]:
    """Every check of the command line and its files, before any caching or file in the logdir."""
    device = resolve_device(args.device)
    settings = complete_args(args, device)
    if args.logdir is not None and env_rank() == 0:  # the one process that writes there
        check_output_dir(args.logdir, "--logdir")  # can be created and written: told before any data is read
    datalists = load_datalists(args)
    args.resume = resolve_resume(args)
    # Weight files, then every case's header and content.
    preflight.check_training_checkpoints(args)
    datalists = preflight.screen_training_cases(args, datalists)
    return device, settings, datalists


@exits_on(CheckpointError)
def main_worker(local_rank: int, plan: LaunchPlan, args: argparse.Namespace, settings: RunSettings,
                datalists: dict, device) -> float:
    ctx = init_distributed(plan, local_rank, device, args.dist_backend)
    amp = device.type == "cuda" and not args.noamp
    print0(ctx, f"device {ctx.device}, {ctx.world_size} process(es); "
                + ("mixed precision (AMP)" if amp else "fp32" + (" (CPU has no AMP)" if device.type == "cpu" else "")))
    try:
        return train(args, settings, datalists, ctx, amp)
    except interrupt.TrainingStopped as e:  # Ctrl-C / SIGTERM, non-finite loss
        print0(ctx, e.message(args.logdir, args.save_checkpoint, CHECKPOINT_FINAL), file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    finally:
        cleanup(ctx)


def train(args: argparse.Namespace, settings: RunSettings, datalists: dict, ctx: DistContext, amp: bool) -> float:
    """Data -> model -> optimizer/schedule -> trainer; returns the best validation mean Dice."""
    train_loader, val_loader = build_loaders(args, settings, datalists, ctx)
    model = build_network(args, settings, ctx)
    optimizer = build_optimizer(model.parameters(), args.optim_name, args.optim_lr, args.reg_weight)
    scheduler = build_scheduler(optimizer, args.lrschedule, args.warmup_epochs, args.max_epochs)
    qc = None
    if args.syn_qc is not None:
        qc = SyntheticTumorQC(load_qc_segmentor(args.syn_qc, settings, ctx.device),
                              [t for _, _, _, t in settings.label_pairs], args.syn_qc_threshold, amp=amp)
        print0(ctx, f"quality control of synthetic crops by {args.syn_qc} (threshold {args.syn_qc_threshold})")
    learned = None
    if args.synthesis in LEARNED_SYNTHESIS:
        learned = load_learned_synthesis(args.syn_generator, settings, ctx.device, amp, args.synthesis,
                                         steps=args.syn_steps, seed=args.seed, preset=args.syn_preset)
        painter = "generator" if args.synthesis == "gan" else "diffusion model"
        print0(ctx, f"synthetic tumors repainted in the training step by the {painter} {args.syn_generator}")
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        loss_fn=DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0, smooth_dr=1e-6),
        train_loader=train_loader,
        val_loader=val_loader,
        inferer=build_inferer(settings.roi, args.val_overlap, args.sw_batch_size, args.roi_mode, settings.window,
                              ctx.device),
        ctx=ctx,
        synthetic_qc=qc,
        learned_synthesis=learned,
        config=TrainerConfig(
            max_epochs=args.max_epochs,
            val_every=args.val_every,
            class_tags=settings.class_tags,
            logdir=Path(args.logdir) if args.logdir else None,
            save_checkpoint=args.save_checkpoint,
            amp=amp,
            seed=args.seed,
            max_steps_per_epoch=args.max_steps_per_epoch,
            log_case_indices=args.log_case_indices,
            args=vars(args).copy(),
            settings=settings.to_dict(),
        ),
    )
    if args.resume:
        trainer.resume(args.resume, USES["resume"], vars(args))
    with interrupt.training_phase():
        return trainer.run_training()


def complete_args(args: argparse.Namespace, device: torch.device) -> RunSettings:
    """Reject inconsistent flags before any work starts; resolve the run's settings once.

    The organ's window and class count fill ``args.a_min/a_max/out_channels/num_classes``
    too, so that the ``args`` stored in checkpoints read as the run actually was.
    """
    if args.json_dir is None:
        raise ValueError("--json_dir (the datalist JSON) is required")
    if args.in_channels != 1:
        raise ValueError(f"--in_channels must be 1 (one CT image per case), got {args.in_channels}")
    # The class count follows the organ's label convention unless given (3; multi-organ 7).
    args.out_channels, args.num_classes = cli.resolve_num_classes(args)
    if args.out_channels != args.num_classes:
        raise ValueError(f"--out_channels ({args.out_channels}) and --num_classes ({args.num_classes}) must agree")
    if args.val_every < 1 or args.max_epochs < 1 or args.batch_size < 1:
        raise ValueError("--val_every, --max_epochs and --batch_size must be at least 1")
    if args.sw_batch_size is not None and args.sw_batch_size < 1:
        raise ValueError(f"--sw_batch_size must be at least 1, got {args.sw_batch_size}")
    if args.resume_ckpt and not args.pretrained_dir:
        raise ValueError("--resume_ckpt needs --pretrained_dir (the checkpoint to load)")
    settings = RunSettings.from_train_args(args)
    check_model_args(settings.model.name, settings.roi, settings.model.swin_type)
    if args.syn_rim_mm is not None:
        if not args.syn:
            raise ValueError("--syn_rim_mm shapes synthetic tumors: it needs --syn")
        if not args.syn_rim_mm >= 0:
            raise ValueError(f"--syn_rim_mm must be a thickness >= 0 mm, got {args.syn_rim_mm}")
    if args.syn_qc is not None or args.syn_qc_threshold is not None:
        if not args.syn:
            raise ValueError("--syn_qc / --syn_qc_threshold check synthetic tumors: they need --syn")
        if args.syn_qc is None:
            raise ValueError("--syn_qc_threshold needs --syn_qc (the segmentor checkpoint)")
        args.syn_qc_threshold = DEFAULT_QC_THRESHOLD if args.syn_qc_threshold is None else args.syn_qc_threshold
        if not 0.0 <= args.syn_qc_threshold < 1.0:
            raise ValueError(f"--syn_qc_threshold must be in [0, 1), got {args.syn_qc_threshold}")
        if args.syn_device != "loader":
            raise ValueError("--syn_qc carries the healthy crop from the loader: use it with --syn_device loader")
    check_synthesis_args(args, device)
    if args.synthesis in LEARNED_SYNTHESIS and args.syn_device != "loader":
        raise ValueError(f"--synthesis {args.synthesis} carries the healthy crop from the loader: use it with --syn_device loader")
    if args.syn_label_edge is not None and not (args.syn and 0.0 < args.syn_label_edge < 1.0):
        raise ValueError(f"--syn_label_edge needs --syn and a fraction in (0, 1), got {args.syn_label_edge}")
    if args.use_pretrained and args.model_name != "swin_unetrv2":
        raise ValueError("--use_pretrained loads Swin-ViT encoder weights: it needs --model_name swin_unetrv2")
    # Weight files are checked now, not after minutes of caching.
    for flag, path in (
        ("--checkpoint", args.checkpoint),
        ("--pretrained_dir", _resume_ckpt_path(args.pretrained_dir) if args.resume_ckpt else None),
        ("--pretrained_swinvit", args.pretrained_swinvit if args.use_pretrained else None),
        ("--syn_qc", args.syn_qc),
    ):
        if path is not None and not Path(path).is_file():
            raise CheckpointError(f"{flag} file not found: {path}")
    if args.syn_qc is not None:  # readable, and made for this run's preprocessing: checked before any caching
        load_qc_segmentor(args.syn_qc, settings, torch.device("cpu"))
    if args.synthesis in LEARNED_SYNTHESIS:
        read_generator(args.syn_generator, settings, args.synthesis)
    if args.logdir is None:
        print0(None, "note: no --logdir, so no TensorBoard events and no checkpoints are written")
    elif not args.save_checkpoint:
        print0(None, "note: without --save_checkpoint no checkpoints are written (and --resume has nothing to use)")
    if device.type == "cpu" and args.amp:
        print0(None, "note: --amp has no effect on CPU (fp32)")
    args.a_min, args.a_max = settings.window
    return settings


def load_datalists(args: argparse.Namespace) -> dict[str, list[dict]]:
    """The training and validation lists, every file checked; one error lists all problems."""
    train = load_datalist(args.json_dir, "training", args.train_dir)
    val = load_datalist(args.json_dir, "validation", args.val_dir)
    if not train:
        raise DatalistError(f"datalist {args.json_dir} has an empty 'training' list")
    problems = []
    for items, what in ((train, "training list"), (val, "validation list")):
        try:
            check_datalist_files(items, what=f"{what} of {args.json_dir}")
        except DatalistError as e:
            problems.append(str(e))
    if problems:
        raise DatalistError("\n".join(problems))
    return {"training": train, "validation": val}


def resolve_resume(args: argparse.Namespace) -> str | None:
    """The checkpoint ``--resume`` continues from, or ``None`` for a fresh start."""
    if args.resume is None:
        return None
    if args.resume != "auto":
        if not Path(args.resume).is_file():
            raise CheckpointError(f"--resume checkpoint not found: {args.resume}")
        return args.resume
    if args.logdir is None:
        raise ValueError("--resume without a path needs --logdir (it looks for <logdir>/model_final.pt)")
    path = Path(args.logdir) / CHECKPOINT_FINAL
    if path.is_file():
        return str(path)
    print0(None, f"--resume: {path} does not exist yet, starting a fresh run")
    return None


def build_loaders(args: argparse.Namespace, settings: RunSettings, datalists: dict, ctx: DistContext):
    """Training loader (cached prefix, synthesis and augmentation per draw) and validation loader."""
    preprocessing = settings.preprocessing()
    train_transform = get_transforms(
        "train", **preprocessing, roi_size=settings.roi, syn=args.syn, organ=settings.organ,
        syn_rim_mm=args.syn_rim_mm, time_synthesis=True,
        keep_healthy=args.syn_qc is not None or args.synthesis in LEARNED_SYNTHESIS,
        # The generator repaints the ellipsoid engine's tumors in the training step.
        synthesis="ellipsoid" if args.synthesis in LEARNED_SYNTHESIS else args.synthesis, syn_grid_mm=args.syn_grid_mm, syn_label_edge=args.syn_label_edge,
        syn_preset=args.syn_preset, syn_device=ctx.device if args.syn_device == "cuda" else None,
    )
    train_ds = build_train_dataset(
        with_case_index(datalists["training"]), train_transform, args.cache_num, args.cache_rate, args.workers,
        progress=ctx.is_main,
    )
    train_loader = build_train_loader(train_ds, args.batch_size, args.workers, ctx, seed=args.seed,
                                      samples_on_device=args.syn_device == "cuda")
    val_loader = build_val_loader(
        with_case_index(datalists["validation"]), get_transforms("val", **preprocessing), args.workers, ctx
    )
    print0(ctx, f"{len(train_ds)} training cases ({'synthetic tumors' if args.syn else 'as labelled'}), "
                f"{len(datalists['validation'])} validation cases")
    if not datalists["validation"]:
        print0(ctx, "note: the datalist has no validation cases: no validation, no model.pt")
    return train_loader, val_loader


def build_network(args: argparse.Namespace, settings: RunSettings, ctx: DistContext) -> torch.nn.Module:
    """The model with its initial weights, on this rank's device, wrapped in DDP when distributed."""
    # Same seed on every rank: identical initial weights (DDP also broadcasts rank 0's).
    torch.manual_seed(args.seed)
    model = settings.build_model()
    if args.use_pretrained:
        report = load_swinvit_weights(model, args.pretrained_swinvit)
        print0(ctx, f"Swin-ViT encoder from {args.pretrained_swinvit}: {report['loaded']} tensors loaded")
    initial = args.checkpoint or (_resume_ckpt_path(args.pretrained_dir) if args.resume_ckpt else None)
    if initial:
        load_model_weights(model, initial)
        print0(ctx, f"model weights from {initial}")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print0(ctx, f"{args.model_name}: {n_params / 1e6:.2f} M trainable parameters")
    model.to(ctx.device)
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    return model


def _resume_ckpt_path(pretrained_dir: str) -> str:
    path = Path(pretrained_dir)
    return str(path / CHECKPOINT_BEST) if path.is_dir() else str(path)


if __name__ == "__main__":
    main()
