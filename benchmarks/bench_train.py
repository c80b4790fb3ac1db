"""Training throughput: data pipeline samples/s (with and without --syn) and UNet step time.

Measures, on phantom abdomen CT (``phantom.make_phantom_dataset``):

1. Data pipeline: training samples per second delivered by the DataLoader after the
   deterministic prefix is cached (with ``--syn`` it holds the synthesis' per-case facts,
   ``tumor_synthesis.case_data``), with and without synthetic tumors, for each number of
   workers in ``--workers`` (default 1, 2, 4). Baseline: the same pipeline without ``--syn``
   in the same run. Also the synthesis share of the loader's time: each sample's synthesis
   seconds (``labelfree.data.wrappers.TimedTransform``) over the time a worker spends per
   sample (workers / samples per second).
2. Model step: one optimizer step (forward, DiceCE loss, backward, AdamW) of the default
   UNet on a batch of ``--batch_size`` patches of ``--roi``^3. Baseline: one forward pass
   without gradients in the same run.
3. Quality control (``--syn_qc``): the cost of the frozen segmentor's check of a batch of
   synthetic crops (a UNet forward under no-grad plus the keep-or-revert rule), against the
   optimizer step of the same run; and likewise the cost of the frozen generator of
   ``--synthesis gan`` repainting every crop of the batch.
4. With ``--device cuda``: whether the pipeline keeps the GPU fed, i.e. the time the
   training loop waits for the next batch versus the time it computes (AMP with ``--amp``).

Every figure is the median of ``--repeats`` timed runs after a warm-up.

Examples::

    python benchmarks/bench_train.py                       # CPU, about 3-6 minutes on 2 cores
    python benchmarks/bench_train.py --device cuda --amp --workers 2 4 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from monai.losses import DiceCELoss

from labelfree.networks import build_model
from labelfree.training.quality_control import SyntheticTumorQC
from labelfree.training.generator import LearnedSynthesis
from tumor_synthesis.learned import GeneratorConfig, TumorGenerator
from labelfree.data.loaders import build_train_dataset
from labelfree.data.datalist import load_datalist
from labelfree.data.transforms import get_transforms
from labelfree.data.wrappers import SYNTHESIS_SECONDS_KEY
from labelfree.runtime.timing import measured_checkout, median_seconds
from labelfree.runtime.distributed import resolve_device

LIVER_WINDOW = (-21.0, 189.0)


def get_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data_root", default=None, help="existing phantom root (default: generate one in a temp dir)")
    p.add_argument("--n_cases", type=int, default=4, help="healthy phantom cases to generate")
    p.add_argument("--spacing", type=float, default=2.0, help="phantom and resampling spacing in mm")
    p.add_argument("--roi", type=int, default=96, help="patch edge in voxels")
    p.add_argument("--batch_size", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="DataLoader worker counts to compare")
    p.add_argument("--batches", type=int, default=8, help="batches per timed pipeline run")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--skip_pipeline", action="store_true")
    p.add_argument("--skip_step", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def phantom_items(args, scratch: Path) -> list[dict]:
    if args.data_root:
        root = Path(args.data_root)
    else:
        from labelfree.phantom import make_phantom_dataset

        root = scratch / "phantom"
        print(f"generating {args.n_cases} healthy phantom cases at {args.spacing} mm in {root} ...", flush=True)
        make_phantom_dataset(root, n_healthy=args.n_cases, n_tumor=1, n_chest_healthy=0, n_chest_nodule=0,
                             seed=args.seed, spacing=(args.spacing,) * 3, previews=False, progress=False)
    return load_datalist(root / "datafolds" / "healthy.json", "training", root)


def make_loader(items, syn: bool, workers: int, args):
    from monai.data import DataLoader

    transform = get_transforms("train", a_min=LIVER_WINDOW[0], a_max=LIVER_WINDOW[1], space=(args.spacing,) * 3,
                               roi_size=(args.roi,) * 3, syn=syn, time_synthesis=syn)
    dataset = build_train_dataset(items, transform, cache_num=len(items), cache_rate=1.0, workers=workers,
                                  progress=False)
    generator = torch.Generator().manual_seed(args.seed)
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=workers, generator=generator,
                      persistent_workers=workers > 0, pin_memory=args.device == "cuda")


def endless(loader):
    while True:
        yield from loader


def pipeline_rate(loader, args) -> tuple[float, float]:
    """Median samples/s over ``repeats`` runs of ``batches`` batches (after 2 warm-up batches), and the
    mean synthesis seconds per sample of those batches (NaN without synthesis)."""
    batches = endless(loader)
    for _ in range(2):
        next(batches)
    rates, synthesis = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        n = 0
        for _ in range(args.batches):
            batch = next(batches)
            n += batch["image"].shape[0]
            if SYNTHESIS_SECONDS_KEY in batch:
                synthesis += [float(v) for v in torch.as_tensor(batch[SYNTHESIS_SECONDS_KEY]).reshape(-1)]
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates), statistics.fmean(synthesis) if synthesis else float("nan")


def bench_pipeline(items, args) -> None:
    print(f"\n== data pipeline: {len(items)} cached cases, roi {args.roi}^3, batch {args.batch_size}, "
          f"{args.spacing} mm; load average {', '.join(f'{v:.2f}' for v in os.getloadavg())} ==")
    print(f"{'workers':>8} {'no syn (samples/s)':>20} {'--syn (samples/s)':>19} {'syn / no-syn':>13} "
          f"{'synthesis ms/sample':>20} {'synthesis share':>16}")
    for workers in args.workers:
        plain, _ = pipeline_rate(make_loader(items, False, workers, args), args)
        syn, seconds = pipeline_rate(make_loader(items, True, workers, args), args)
        # A worker spends workers / rate seconds per sample (all of them busy).
        share = seconds * syn / max(workers, 1)
        print(f"{workers:>8} {plain:>20.2f} {syn:>19.2f} {syn / plain:>13.2f} {1e3 * seconds:>20.1f} "
              f"{share:>16.2f}", flush=True)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_step(args) -> None:
    device = resolve_device(args.device)
    amp = args.amp and device.type == "cuda"
    torch.manual_seed(args.seed)
    model = build_model("unet", roi_size=(args.roi,) * 3).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0, smooth_dr=1e-6)
    shape = (args.batch_size, 1, args.roi, args.roi, args.roi)
    image = torch.rand(shape, device=device)
    label = torch.randint(0, 3, shape, device=device).float()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            loss = loss_fn(model(image), label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    @torch.no_grad()
    def forward():
        with torch.autocast(device.type, enabled=amp):
            model(image)

    # Quality control: every crop holds a synthetic tumor that the healthy original does not.
    healthy_label = torch.ones(shape, device=device)
    syn_label = healthy_label.clone()
    c = args.roi // 2
    syn_label[..., c - 8:c + 8, c - 8:c + 8, c - 8:c + 8] = 2
    qc = SyntheticTumorQC(build_model("unet", roi_size=(args.roi,) * 3).to(device), [2], amp=amp)

    def quality_control():
        qc(image, syn_label, image, healthy_label)

    # Learned synthesis (--synthesis gan): the frozen generator repaints every crop's tumor.
    torch.manual_seed(args.seed)
    learned = LearnedSynthesis(TumorGenerator(GeneratorConfig(
        organ="liver", window=(-21.0, 189.0), spacing=(args.spacing,) * 3, sign=-1, roi=(args.roi,) * 3)).to(device),
        [2], amp=amp)

    def generator():
        learned(image, syn_label, image, healthy_label)

    n = args.steps * args.repeats
    sync = partial(synchronize, device)
    step_s, forward_s = median_seconds(step, n, sync=sync), median_seconds(forward, n, sync=sync)
    qc_s, gan_s = median_seconds(quality_control, n, sync=sync), median_seconds(generator, n, sync=sync)
    print(f"\n== UNet (original config) on {device}{' + AMP' if amp else ' fp32'}: batch {args.batch_size} x "
          f"{args.roi}^3, median of {n} ==")
    print(f"optimizer step {step_s:.3f} s   forward only (baseline) {forward_s:.3f} s   "
          f"step / forward {step_s / forward_s:.2f}   {args.batch_size / step_s:.2f} samples/s")
    print(f"quality control (--syn_qc, every crop synthetic) {qc_s:.3f} s per batch = "
          f"+{100 * qc_s / step_s:.0f}% of the optimizer step")
    print(f"learned synthesis (--synthesis gan, every crop repainted) {gan_s:.3f} s per batch = "
          f"+{100 * gan_s / step_s:.0f}% of the optimizer step")


def bench_gpu_feed(items, args) -> None:
    """Training loop on the GPU with real batches: time waiting for data vs computing."""
    device = torch.device("cuda")
    amp = args.amp
    torch.backends.cudnn.benchmark = True
    model = build_model("unet", roi_size=(args.roi,) * 3).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0, smooth_dr=1e-6)
    print(f"\n== GPU feed (--syn, {'AMP' if amp else 'fp32'}): wait for data vs compute, "
          f"{args.batches * args.repeats} steps ==")
    print(f"{'workers':>8} {'wait (s/step)':>14} {'compute (s/step)':>17} {'waiting':>8}")
    for workers in args.workers:
        batches = endless(make_loader(items, True, workers, args))
        for _ in range(2):  # warm-up: cuDNN autotuning, worker start
            next(batches)
        wait = compute = 0.0
        for _ in range(args.batches * args.repeats):
            t0 = time.perf_counter()
            batch = next(batches)
            image = batch["image"].as_tensor().to(device, non_blocking=True)
            label = batch["label"].as_tensor().to(device, non_blocking=True)
            t1 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=amp):
                loss = loss_fn(model(image), label)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            wait, compute = wait + t1 - t0, compute + t2 - t1
        n = args.batches * args.repeats
        share = wait / (wait + compute)
        verdict = "GPU fed" if share < 0.1 else "data-bound: add workers"
        print(f"{workers:>8} {wait / n:>14.3f} {compute / n:>17.3f} {share:>7.0%}  {verdict}", flush=True)


def main() -> None:
    args = get_args()
    try:
        resolve_device(args.device)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}; "
          f"code from {measured_checkout()}")
    with tempfile.TemporaryDirectory(prefix="bench_train_") as scratch:
        items = None if (args.skip_pipeline and args.device == "cpu") else phantom_items(args, Path(scratch))
        if not args.skip_pipeline:
            bench_pipeline(items, args)
        if not args.skip_step:
            bench_step(args)
        if args.device == "cuda":
            bench_gpu_feed(items, args)


if __name__ == "__main__":
    main()
