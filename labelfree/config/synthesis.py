"""Checks of the synthesis-model flags of ``main.py`` (``--synthesis``, ``--syn_grid_mm``, ``--syn_device``,
``--syn_generator``).

Kept apart from ``labelfree/cli/train.py`` so that the training CLI only calls one function.
"""

from __future__ import annotations

import argparse

import torch


def check_synthesis_args(args: argparse.Namespace, device: torch.device) -> None:
    """Reject synthesis flags that would do nothing or cannot work, before any data is read.

    Raises:
        ValueError: ``--synthesis growth`` or ``--syn_grid_mm`` without ``--syn``; ``--syn_grid_mm``
            with the ellipsoid model or not positive; ``--syn_rim_mm`` with the growth model; the
            growth model for an organ it has no rules for (lung); ``--syn_device cuda``
            without --syn, without a CUDA training device or with loader workers (CUDA
            cannot run in forked worker processes); ``--synthesis gan`` without
            ``--syn_generator``, and ``--syn_generator`` without it.
    """
    synthesis = getattr(args, "synthesis", "ellipsoid")
    grid_mm = getattr(args, "syn_grid_mm", None)
    if synthesis != "ellipsoid" and not args.syn:
        raise ValueError(f"--synthesis {synthesis} chooses how synthetic tumors are made: it needs --syn")
    if grid_mm is not None:
        if synthesis != "growth":
            raise ValueError("--syn_grid_mm is the growth model's simulation grid: it needs --synthesis growth")
        if not grid_mm > 0:
            raise ValueError(f"--syn_grid_mm must be a positive spacing in mm, got {grid_mm}")
    generator = getattr(args, "syn_generator", None)
    if synthesis == "gan" and generator is None:
        raise ValueError("--synthesis gan repaints tumors with a trained generator: give --syn_generator PATH "
                         "(the generator.pt that syn_train.py writes)")
    if generator is not None and synthesis != "gan":
        raise ValueError(f"--syn_generator is the learned model's weights: it needs --synthesis gan "
                         f"(this run: --synthesis {synthesis})")
    if getattr(args, "syn_device", "loader") == "cuda":
        if not args.syn:
            raise ValueError("--syn_device cuda moves synthesis to the GPU: it needs --syn")
        if device.type != "cuda":
            raise ValueError(f"--syn_device cuda needs a CUDA training device, this run uses {device}")
        if args.workers != 0:
            raise ValueError(f"--syn_device cuda runs synthesis in the training process: it needs --workers 0 "
                             f"(CUDA cannot run in loader worker processes), got --workers {args.workers}")
    if synthesis == "growth":
        if getattr(args, "syn_rim_mm", None):
            raise ValueError("--syn_rim_mm shapes the ellipsoid model's clipping; the growth model is stopped by "
                             "the organ edge itself: drop it with --synthesis growth")
        from tumor_synthesis.organs import get_organ_profile
        from tumor_synthesis.growth import get_growth_rules

        for member in get_organ_profile(args.organ).members:
            get_growth_rules(member.name)  # raises, naming the organs the growth model has rules for
