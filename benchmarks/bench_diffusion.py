"""Benchmark of the diffusion painter: seconds per segmentation crop by sampling steps, on one core.

    python benchmarks/bench_diffusion.py [--model runs/diffusion/diffusion.pt] [--crop 64] [--steps 4 10 30]

Times ``main.py --synthesis diffusion``'s repainting (``labelfree.training.generator.DiffusionSynthesis``)
of one segmentation crop (``--crop``^3, windowed to [0, 1]) holding one engine tumor of
``--tumor`` voxels across, inside the organ, for each step count; the same run's baseline is
one forward of the model's network on one window of its training crop (a sampling step's
unit), so the ratios compare across machines. ``--model``: a ``syn_train.py --model diffusion``
file (its network and training crop); without it, a freshly initialised model of the default
configuration (the time does not depend on the weights). Prints medians of ``--repeats`` runs.
"""

from __future__ import annotations

import os

# One core, whatever the machine: set before torch loads its thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse

import torch

from labelfree.runtime.timing import median_seconds
from labelfree.training.generator import DiffusionSynthesis, read_generator
from tumor_synthesis.diffusion import DiffusionConfig, TumorDiffusion


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a diffusion.pt of syn_train.py --model diffusion")
    parser.add_argument("--crop", type=int, default=64, help="segmentation crop edge (voxels)")
    parser.add_argument("--tumor", type=int, default=12, help="edge of the engine's cubic tumor (voxels)")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10, 30], help="sampling step counts")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per step count")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(1)
    if args.model:
        model = read_generator(args.model, synthesis="diffusion").build()
    else:
        torch.manual_seed(0)
        model = TumorDiffusion(DiffusionConfig(organ="liver", window=(-21.0, 189.0), spacing=(2.0, 2.0, 2.0), sign=-1))
    model.eval()
    shape = (1, 1, args.crop, args.crop, args.crop)
    g = torch.Generator().manual_seed(0)
    healthy = 0.45 + 0.05 * torch.randn(shape, generator=g)
    healthy_label = torch.ones(shape, dtype=torch.uint8)
    label = healthy_label.clone()
    lo = args.crop // 2 - args.tumor // 2
    label[..., lo:lo + args.tumor, lo:lo + args.tumor, lo:lo + args.tumor] = 2
    engine = torch.where(label == 2, healthy - 0.2, healthy)

    window = (1, 1, *model.config.roi)
    x, t = torch.zeros(window), torch.tensor([500])
    condition = torch.zeros((1, 2, *model.config.roi))
    with torch.no_grad():
        forward_s = median_seconds(lambda: model.velocity(x, condition, t), args.repeats)
    print(f"network: channels {model.config.channels}, training crop {model.config.roi}; one forward on one window: "
          f"{forward_s:.3f} s (baseline)")
    figures = {"forward_s": forward_s}
    for steps in args.steps:
        paint = DiffusionSynthesis(model, [2], steps=steps, seed=0)
        seconds = median_seconds(lambda paint=paint: paint(engine, label, healthy, healthy_label), args.repeats)
        figures[f"crop_s_{steps}_steps"] = seconds
        print(f"{steps:3d} steps: {seconds:.3f} s per {args.crop}^3 crop with one {args.tumor}^3 tumor "
              f"({seconds / forward_s:.1f} x one forward)")
    return figures


if __name__ == "__main__":
    main()
