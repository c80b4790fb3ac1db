"""GPU check: one prepared script that exercises every CUDA path of the project and records its figures.

Run it whenever a GPU is at hand (it is sized to finish in under 5 minutes on one GPU)::

    python benchmarks/gpu_check.py --out results/gpu_check            # CUDA, full sizes
    python benchmarks/gpu_check.py --device cpu --out /tmp/gpu_check  # dry run: tiny sizes, < 30 s

What it runs, each part recorded as ``ok`` / ``failed: <error>`` / ``not available: <why>``:

1. ``train_unet``, ``train_swin_unetrv2``: AMP training steps (``torch.amp.autocast`` +
   ``GradScaler``, DiceCE, AdamW, as ``labelfree.training.trainer`` does them) of the original UNet and
   of Swin-UNETR v2 at 96^3, batch 2, on phantom abdomens with ``--syn`` (the project's
   training pipeline, ``TumorGenerated`` on every draw) and ``--workers`` loader processes:
   median step time, the fraction of wall time spent waiting for data, samples/s, peak GPU
   memory (``torch.cuda.max_memory_allocated``; on CPU the process's peak RSS).
2. ``torchrun``: ``torchrun --standalone --nproc_per_node=1 main.py --syn ...`` for a few
   steps and one in-training validation: NCCL on CUDA (gloo on CPU), AMP, checkpoints.
3. ``inference_*``: sliding-window inference at overlap 0.75 (the original evaluation) on a
   512 x 512 x 120 phantom (0.8 x 0.8 x 2.5 mm, resampled to 1 mm: 410 x 410 x 300 voxels) with ``--roi_mode``
   none / body / organ (random UNet weights: the organ pass then finds noise, so its time is an
   upper bound), AMP, the device's default ``sw_batch_size``.
4. ``synthesis_*``: the CUDA paths of the synthesis models (growth, generator, diffusion, quality
   control) where the installed ``tumor_synthesis`` has them, else ``not available``.

Figures go to ``<out>/gpu_check.json`` and ``<out>/gpu_check.md`` (atomic writes).
``--device cpu`` shrinks every size (32^3 patches, 64^3 for Swin-UNETR, one step of batch 1, 4 mm phantoms) so the whole
script runs in the test suite; its figures only show that the paths run.
"""

from __future__ import annotations

import argparse
import math
import dataclasses
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import torch

from labelfree.runtime.timing import median_seconds

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Everything the device decides: full sizes on CUDA, tiny ones for the CPU dry run."""

    roi: int
    swin_roi: int
    batch_size: int
    steps: int
    warmup: int
    workers: int
    cases: int
    spacing: tuple[float, float, float]
    train_space: float
    infer_shape: tuple[int, int, int]
    infer_spacing: tuple[float, float, float]
    infer_space: float
    infer_roi: int
    torchrun_steps: int


FULL = Sizes(roi=96, swin_roi=96, batch_size=2, steps=300, warmup=10, workers=8, cases=4, spacing=(1.0, 1.0, 2.5),
             train_space=1.0, infer_shape=(512, 512, 120), infer_spacing=(0.8, 0.8, 2.5), infer_space=1.0,
             infer_roi=96, torchrun_steps=20)
#: Swin-UNETR needs at least 64^3; the dry run's phantom is sampled at 4 mm; one step of batch 1
#: (a Swin-UNETR step at 64^3 costs seconds of CPU).
TINY = Sizes(roi=32, swin_roi=64, batch_size=1, steps=1, warmup=0, workers=0, cases=1, spacing=(4.0, 4.0, 4.0), train_space=4.0,
             infer_shape=(48, 48, 16), infer_spacing=(4.0, 4.0, 8.0), infer_space=4.0, infer_roi=32,
             torchrun_steps=1)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                        help="cuda: the check itself; cpu: a dry run with tiny sizes (figures meaningless)")
    parser.add_argument("--out", default="results/gpu_check", help="folder of gpu_check.json and gpu_check.md")
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per network (300; dry run 3)")
    parser.add_argument("--workers", type=int, default=None, help="loader worker processes (8; dry run 0)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("train", "torchrun", "inference", "synthesis"),
                        help="parts not to run")
    return parser


# ---------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    """Peak GPU memory allocated by tensors (CUDA) or the process's peak RSS (CPU), MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_part(results: dict, name: str, fn, *args) -> None:
    """Run one part; record its figures, or its failure, without stopping the others."""
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"[gpu_check] {name} ...", flush=True)
    try:
        figures = fn(*args)
        status = figures.pop("status", "ok")
    except Exception as e:  # the check reports every failure and carries on
        traceback.print_exc()
        figures, status = {}, f"failed: {type(e).__name__}: {e}"
    figures["seconds"] = round(time.perf_counter() - start, 2)
    # CPU time of this process: on a shared machine the honest measure of what the part costs.
    figures["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
    results["parts"][name] = {"status": status, **figures}
    print(f"[gpu_check] {name}: {status} ({figures['seconds']} s)", flush=True)


def make_data(root: Path, sizes: Sizes) -> Path:
    """A phantom data root: healthy abdomens for training, one tumor case for validation."""
    from labelfree.phantom import make_phantom_dataset

    make_phantom_dataset(root, n_healthy=sizes.cases, n_tumor=1, n_chest_healthy=0, n_chest_nodule=0,
                         n_pancreas_tumor=0, n_kidney_tumor=0, seed=0, spacing=sizes.spacing, previews=False,
                         workers=min(sizes.cases, os.cpu_count() or 1), progress=False)
    return root / "datafolds" / "healthy.json"


# ---------------------------------------------------------------------------- 1. training steps
def train_steps(model_name: str, datalist: Path, root: Path, sizes: Sizes, device: torch.device) -> dict:
    from monai.losses import DiceCELoss

    from labelfree.data.loaders import build_train_dataset, build_train_loader, prepare_epoch
    from labelfree.data.datalist import load_datalist
    from labelfree.runtime.distributed import DistContext
    from labelfree.networks import build_model
    from labelfree.optimizers import build_optimizer
    from labelfree.data.transforms import get_transforms

    amp = device.type == "cuda"
    roi = (sizes.swin_roi if model_name.startswith("swin") else sizes.roi,) * 3
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=device, distributed=False)
    transform = get_transforms("train", a_min=-21, a_max=189, space=(sizes.train_space,) * 3, roi_size=roi, syn=True)
    items = load_datalist(datalist, "training", root)
    dataset = build_train_dataset(items, transform, cache_num=len(items), cache_rate=1.0, workers=sizes.workers,
                                  progress=False)
    loader = build_train_loader(dataset, batch_size=sizes.batch_size, workers=sizes.workers, ctx=ctx, seed=0)
    torch.manual_seed(0)
    model = build_model(model_name, out_channels=3, roi_size=roi, swin_type="base" if roi[0] >= 96 else "tiny")
    model.to(device).train()
    optimizer = build_optimizer(model.parameters(), "adamw", 1e-4, 1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0, smooth_dr=1e-6)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    reset_peak(device)

    waits, steps, epoch = [], [], 0
    total = sizes.warmup + sizes.steps
    start_wall = None
    while len(steps) < total:
        prepare_epoch(loader, epoch, 0, 0)
        iterator = iter(loader)
        while len(steps) < total:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                break
            image = batch["image"].to(device, non_blocking=True)
            label = batch["label"].to(device, non_blocking=True)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, enabled=amp):
                loss = loss_fn(model(image), label)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss.item()  # waits for the GPU, as the trainer's logging does
            t2 = time.perf_counter()
            if len(steps) == sizes.warmup:
                start_wall = t0
            waits.append(t1 - t0)
            steps.append(t2 - t0)
        epoch += 1
    wall = time.perf_counter() - start_wall
    timed_waits, timed_steps = waits[sizes.warmup:], steps[sizes.warmup:]
    return {
        "model": model_name, "roi": list(roi), "batch_size": sizes.batch_size, "amp": amp, "workers": sizes.workers,
        "syn": True, "timed_steps": len(timed_steps),
        "step_s_median": round(statistics.median(timed_steps), 4),
        "compute_s_median": round(statistics.median(s - w for s, w in zip(timed_steps, timed_waits)), 4),
        "data_wait_fraction": round(sum(timed_waits) / wall, 3),
        "samples_per_s": round(sizes.batch_size * len(timed_steps) / wall, 2),
        "peak_memory_mib": round(peak_memory_mib(device), 1),
        "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
    }


# ---------------------------------------------------------------------------- 2. torchrun
def torchrun_check(datalist: Path, root: Path, sizes: Sizes, device: torch.device, work: Path) -> dict:
    logdir = work / "torchrun_run"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(REPO / "main.py"),
        "--syn", "--model_name=unet", f"--batch_size={sizes.batch_size}", "--max_epochs=1", "--val_every=1",
        f"--max_steps_per_epoch={sizes.torchrun_steps}", f"--workers={min(sizes.workers, 2)}",
        f"--device={device.type}", f"--roi_x={sizes.roi}", f"--roi_y={sizes.roi}", f"--roi_z={sizes.roi}",
        *(f"--space_{a}={sizes.train_space}" for a in "xyz"), "--save_checkpoint", f"--logdir={logdir}",
        "--train_dir", str(root), "--val_dir", str(root), "--json_dir", str(datalist),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1" if device.type == "cpu" else os.environ.get("OMP_NUM_THREADS", "4"))
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    tail = (run.stdout + run.stderr)[-1500:]
    if run.returncode != 0:
        raise RuntimeError(f"torchrun exited with {run.returncode}: {tail}")
    if not (logdir / "model_final.pt").is_file():
        raise RuntimeError(f"torchrun wrote no model_final.pt: {tail}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    return {"backend": backend, "nproc_per_node": 1, "steps": sizes.torchrun_steps, "checkpoint": "model_final.pt",
            "log_tail": tail.strip().splitlines()[-3:]}


# ---------------------------------------------------------------------------- 3. inference
def inference_case(work: Path, sizes: Sizes) -> Path:
    """A phantom abdomen of ``infer_shape`` voxels at ``infer_spacing`` mm, written as NIfTI."""
    import nibabel as nib

    from labelfree.phantom import generate_case

    fov = tuple(n * s for n, s in zip(sizes.infer_shape, sizes.infer_spacing))
    case = generate_case("abdomen", seed=0, lesions=True, spacing=sizes.infer_spacing, fov_mm=fov)
    path = work / "infer_case.nii.gz"
    nib.save(nib.Nifti1Image(case.image.astype(np.int16), np.diag([*sizes.infer_spacing, 1.0])), str(path))
    return path


def inference_check(path: Path, sizes: Sizes, device: torch.device, roi_mode: str) -> dict:
    from monai.data import DataLoader, Dataset

    from labelfree.inference.predictor import Predictor
    from labelfree.inference.roi import body_threshold, resolve_sw_batch_size
    from labelfree.networks import build_model
    from labelfree.data.transforms import get_transforms

    roi = (sizes.infer_roi,) * 3
    torch.manual_seed(0)
    model = build_model("unet", out_channels=3, roi_size=roi)
    transforms = get_transforms("infer", a_min=-21, a_max=189, space=(sizes.infer_space,) * 3)
    sw_batch_size = resolve_sw_batch_size(None, device)
    predictor = Predictor(model, transforms, roi, 0.75, sw_batch_size, device, amp=True, roi_mode=roi_mode,
                          body_threshold=body_threshold(-21, 189))
    batch = next(iter(DataLoader(Dataset([{"image": str(path)}], transforms), batch_size=1)))
    predictor.probabilities(batch["image"][..., : sizes.infer_roi])  # warm-up (cuDNN autotune, allocator)
    reset_peak(device)
    sync(device)
    start = time.perf_counter()
    probabilities = predictor.probabilities(batch["image"])
    sync(device)
    t_sw = time.perf_counter() - start
    start = time.perf_counter()
    predictor.labels_on_input_grid(batch, probabilities)
    t_back = time.perf_counter() - start
    stats = predictor.inferer.stats[0]
    return {
        "scan": list(sizes.infer_shape), "spacing_mm": list(sizes.infer_spacing),
        "resampled": list(batch["image"].shape[2:]), "overlap": 0.75, "roi": list(roi), "amp": predictor.amp,
        "sw_batch_size": sw_batch_size, "roi_mode": roi_mode, "windows_full": stats.windows_full,
        "windows_run": stats.windows_run, "fraction_skipped": round(stats.fraction_skipped, 3),
        "sliding_window_s": round(t_sw, 3), "invert_s": round(t_back, 3),
        "peak_memory_mib": round(peak_memory_mib(device), 1), "fallback": stats.fallback,
    }


# ---------------------------------------------------------------------------- 4. synthesis models
#: The synthesis paths checked on the device: the growth model painting a CUDA tensor, the
#: quality control's frozen-segmentor check of a batch, and the learned generator: one
#: adversarial step of syn_train.py's networks and losses (AMP on CUDA) followed by main.py's
#: repainting of a batch (``generator_step_s_median`` is the step, ``batch_s_median`` the repaint); the
#: diffusion model: one training step of ``syn_train.py --model diffusion`` (AMP on CUDA) on crops of
#: its training size, then ``main.py --synthesis diffusion``'s repainting of a batch of segmentation
#: crops at 4 and 10 sampling steps (``diffusion_step_s_median``, ``batch_s_median_4_steps`` / ``_10_steps``).
SYNTHESIS_MODELS = ("growth", "quality_control", "generator", "diffusion")
#: Training crop of the diffusion check (voxels): the model paints windows of this size around the tumors.
DIFFUSION_ROI = {"cuda": 64, "cpu": 16}


def synthesis_check(name: str, datalist: Path, root: Path, sizes: Sizes, device: torch.device) -> dict:
    if name == "generator":
        return generator_check(sizes, device)
    if name == "diffusion":
        return diffusion_check(sizes, device)
    from labelfree.data.datalist import load_datalist
    from labelfree.data.transforms import get_transforms

    item = load_datalist(datalist, "training", root)[0]
    sample = get_transforms("val", a_min=-21, a_max=189, space=(sizes.train_space,) * 3)(item)
    if name == "growth":
        from tumor_synthesis import TumorGenerated

        transform = TumorGenerated(keys=("image", "label"), prob=1.0, synthesis="growth", device=device)
        transform.set_random_state(0)

        def run():
            return int((torch.as_tensor(transform(dict(sample))["label"]) == 2).sum())
    else:
        from labelfree.networks import build_model
        from labelfree.training.quality_control import SyntheticTumorQC

        roi = (sizes.roi,) * 3
        qc = SyntheticTumorQC(build_model("unet", roi_size=roi).to(device), [2], amp=device.type == "cuda")
        healthy = torch.ones((2, 1, *roi), device=device)
        synthetic = healthy.clone()
        c = sizes.roi // 2
        synthetic[..., c - 4:c + 4, c - 4:c + 4, c - 4:c + 4] = 2
        image = torch.rand((2, 1, *roi), device=device)

        def run():
            return qc(image, synthetic, image, healthy)[2].checked
    seconds, result = timed_with_result(run, device)
    key = "tumor_voxels" if name == "growth" else "crops_checked"
    return {"sample_s_median" if name == "growth" else "batch_s_median": seconds, key: result}


def timed_with_result(fn, device: torch.device, runs: int = 3):
    """``(median seconds of runs of fn rounded to ms, the last run's result)``, each run synchronised with the device."""
    results = []
    seconds = median_seconds(lambda: results.append(fn()), runs, sync=partial(sync, device), warmup=0)
    return round(seconds, 3), results[-1]


def generator_check(sizes: Sizes, device: torch.device) -> dict:
    from labelfree.networks import build_model
    from labelfree.training.generator import LearnedSynthesis
    from tumor_synthesis.learned import (REAL_TUMOR, SYNTHETIC_TUMOR, GeneratorConfig, TumorGenerator,
                                         build_discriminator, discriminator_loss, discriminator_targets,
                                         generator_loss, synthetic_tumor_mask)

    amp = device.type == "cuda"
    roi = (sizes.roi,) * 3
    torch.manual_seed(0)
    config = GeneratorConfig(organ="liver", window=(-21.0, 189.0), spacing=(sizes.train_space,) * 3, sign=-1,
                             roi=roi)
    generator, discriminator = TumorGenerator(config).to(device), build_discriminator().to(device)
    segmentor = build_model("unet", roi_size=roi).to(device).eval()
    for p in segmentor.parameters():
        p.requires_grad_(False)
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=2e-4) for m in (generator, discriminator))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    healthy_label = torch.ones((2, 1, *roi), dtype=torch.uint8, device=device)
    label = healthy_label.clone()
    c = sizes.roi // 2
    label[..., c - 4:c + 4, c - 4:c + 4, c - 4:c + 4] = 2
    healthy = torch.rand((2, 1, *roi), device=device) * 0.5 + 0.25
    engine = torch.where(label == 2, healthy - 0.2, healthy)
    mask, organ = synthetic_tumor_mask(label, healthy_label, [2]), healthy_label > 0
    losses = {}

    def step():
        with torch.autocast(device.type, enabled=amp):
            painted = generator(healthy, engine, mask, organ)
            logits = [discriminator(engine), discriminator(painted.detach())]
        loss_d = discriminator_loss(logits, [discriminator_targets(mask, REAL_TUMOR),
                                             discriminator_targets(mask, SYNTHETIC_TUMOR)])
        opt_d.zero_grad(set_to_none=True)
        scaler.scale(loss_d).backward()
        scaler.step(opt_d)
        for p in discriminator.parameters():
            p.requires_grad_(False)
        with torch.autocast(device.type, enabled=amp):
            loss_g, _ = generator_loss(discriminator(painted), segmentor(painted), label, mask, 0.1, 1.0)
        opt_g.zero_grad(set_to_none=True)
        scaler.scale(loss_g).backward()
        for p in discriminator.parameters():
            p.requires_grad_(True)
        scaler.step(opt_g)
        scaler.update()
        losses.update(loss_d=loss_d.item(), loss_g=loss_g.item())

    step_s, _ = timed_with_result(step, device)
    learned = LearnedSynthesis(generator, [2], amp=amp)  # freezes the generator: after its training steps
    repaint_s, _ = timed_with_result(lambda: learned(engine, label, healthy, healthy_label), device)
    if not all(math.isfinite(v) for v in losses.values()):
        raise RuntimeError(f"non-finite generator losses {losses}")
    return {"generator_step_s_median": step_s, "batch_s_median": repaint_s, "amp": amp,
            **{k: round(v, 4) for k, v in losses.items()}}


def diffusion_check(sizes: Sizes, device: torch.device) -> dict:
    from labelfree.training.generator import DiffusionSynthesis
    from tumor_synthesis.diffusion import DiffusionConfig, TumorDiffusion

    amp = device.type == "cuda"
    roi = (sizes.roi,) * 3
    window = (DIFFUSION_ROI[device.type],) * 3
    torch.manual_seed(0)
    channels = (16, 32, 64) if device.type == "cuda" else (8, 16)
    config = DiffusionConfig(organ="liver", window=(-21.0, 189.0), spacing=(sizes.train_space,) * 3, sign=-1,
                             channels=channels, roi=window)
    model = TumorDiffusion(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    c = window[0] // 2
    real = torch.rand((2, 1, *window), device=device) * 0.5 + 0.25
    tumor = torch.zeros_like(real, dtype=torch.bool)
    tumor[..., c - 4:c + 4, c - 4:c + 4, c - 4:c + 4] = True
    losses = []

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = model(real, tumor, torch.Generator().manual_seed(len(losses)))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())

    step_s, _ = timed_with_result(step, device)
    # main.py's repainting: a batch of segmentation crops with one engine tumor each, in the organ.
    healthy_label = torch.ones((2, 1, *roi), dtype=torch.uint8, device=device)
    label = healthy_label.clone()
    c = sizes.roi // 2
    label[..., c - 4:c + 4, c - 4:c + 4, c - 4:c + 4] = 2
    healthy = torch.rand((2, 1, *roi), device=device) * 0.5 + 0.25
    engine = torch.where(label == 2, healthy - 0.2, healthy)
    result = {"diffusion_step_s_median": step_s, "amp": amp, "window": list(window), "crop": list(roi)}
    for steps in (4, 10):
        paint = DiffusionSynthesis(model, [2], steps=steps, seed=0, amp=amp)  # freezes the model
        seconds, (painted, _) = timed_with_result(lambda: paint(engine, label, healthy, healthy_label), device)
        if not bool(torch.isfinite(painted).all()) or not torch.equal(painted[label != 2], healthy[label != 2]):
            raise RuntimeError(f"the diffusion repaint at {steps} steps changed voxels outside its tumors or is "
                               "not finite")
        result[f"batch_s_median_{steps}_steps"] = seconds
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"non-finite diffusion losses {losses}")
    return {**result, "loss": round(losses[-1], 4)}


# ---------------------------------------------------------------------------- report
def environment(device: torch.device) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device.type,
           "cpu_count": os.cpu_count()}
    try:
        import monai

        env["monai"] = monai.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(), nccl=".".join(map(str, torch.cuda.nccl.version())))
    return env


def markdown(results: dict) -> str:
    lines = [f"# GPU check ({results['environment'].get('gpu', results['environment']['device'])})", "",
             f"`{results['command']}`, {results['date']}; total {results['seconds']} s.", ""]
    if results["dry_run"]:
        lines += ["**Dry run on CPU with tiny sizes: the figures only show that every path runs.**", ""]
    lines += ["| part | status | figures |", "|---|---|---|"]
    for name, part in results["parts"].items():
        figures = ", ".join(f"{k} {v}" for k, v in part.items() if k not in ("status", "log_tail"))
        lines.append(f"| {name} | {part['status']} | {figures} |")
    lines += ["", "Environment: " + ", ".join(f"{k} {v}" for k, v in results["environment"].items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    from labelfree.io.atomic import write_json_atomic, write_text_atomic

    from labelfree.runtime.distributed import resolve_device

    try:
        device = resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(f"error: {e} (--device cpu is the dry run)") from None
    sizes = FULL if device.type == "cuda" else TINY
    if args.steps is not None:
        sizes = dataclasses.replace(sizes, steps=args.steps)
    if args.workers is not None:
        sizes = dataclasses.replace(sizes, workers=args.workers)
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors: threads only contend on a shared CPU
    start = time.perf_counter()
    results = {"command": " ".join(["python benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "dry_run": device.type == "cpu",
               "environment": environment(device), "parts": {}}
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    try:
        root = work / "phantom"
        cpu_start = time.process_time()
        datalist = make_data(root, sizes)
        results["data_cpu_seconds"] = round(time.process_time() - cpu_start, 2)
        if "train" not in args.skip:
            for model_name in ("unet", "swin_unetrv2"):
                run_part(results, f"train_{model_name}", train_steps, model_name, datalist, root, sizes, device)
        if "torchrun" not in args.skip:
            run_part(results, "torchrun", torchrun_check, datalist, root, sizes, device, work)
        if "inference" not in args.skip:
            case = inference_case(work, sizes)
            for mode in ("none", "body", "organ"):
                run_part(results, f"inference_{mode}", inference_check, case, sizes, device, mode)
        if "synthesis" not in args.skip:
            for name in SYNTHESIS_MODELS:
                run_part(results, f"synthesis_{name}", synthesis_check, name, datalist, root, sizes, device)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - start, 1)
    out = Path(args.out)
    write_json_atomic(out / "gpu_check.json", results)
    write_text_atomic(out / "gpu_check.md", markdown(results))
    print(markdown(results))
    print(f"figures written to {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")
    return results


if __name__ == "__main__":
    main()
