"""Checks of the synthesis-model flags of ``main.py`` (``--synthesis``, ``--syn_grid_mm``, ``--syn_device``,
``--syn_generator``, ``--syn_steps``, ``--syn_preset``).

Kept apart from ``labelfree/cli/train.py`` so that the training CLI only calls one function.
"""

from __future__ import annotations

import argparse

import torch

#: ``--synthesis`` values whose tumors a trained model (``--syn_generator``) repaints in the training step.
LEARNED_SYNTHESIS = ("gan", "diffusion")


def check_synthesis_args(args: argparse.Namespace, device: torch.device) -> None:
    """Reject synthesis flags that would do nothing or cannot work, before any data is read.

    Raises:
        ValueError: ``--synthesis growth`` or ``--syn_grid_mm`` without ``--syn``; ``--syn_grid_mm``
            with the ellipsoid model or not positive; ``--syn_rim_mm`` with the growth model; the
            growth model for an organ it has no rules for (lung); ``--syn_device cuda``
            without --syn, without a CUDA training device or with loader workers (CUDA
            cannot run in forked worker processes); ``--synthesis gan`` or ``diffusion`` without
            ``--syn_generator``, and ``--syn_generator`` without one of them; ``--syn_steps``
            without ``--synthesis diffusion`` or below 1; ``--syn_preset`` other than original
            without --syn or for an organ without that preset.
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
    check_learned_flags(synthesis, getattr(args, "syn_generator", None), getattr(args, "syn_steps", None))
    if getattr(args, "syn_device", "loader") == "cuda":
        if not args.syn:
            raise ValueError("--syn_device cuda moves synthesis to the GPU: it needs --syn")
        if device.type != "cuda":
            raise ValueError(f"--syn_device cuda needs a CUDA training device, this run uses {device}")
        if args.workers != 0:
            raise ValueError(f"--syn_device cuda runs synthesis in the training process: it needs --workers 0 "
                             f"(CUDA cannot run in loader worker processes), got --workers {args.workers}")
    preset = getattr(args, "syn_preset", "original")
    if preset != "original":
        if not args.syn:
            raise ValueError(f"--syn_preset {preset} chooses how synthetic tumors look: it needs --syn")
        from tumor_synthesis.organs import get_organ_profile, with_preset

        with_preset(get_organ_profile(args.organ), preset)  # raises, naming the organs that have it
    if synthesis == "growth":
        if getattr(args, "syn_rim_mm", None):
            raise ValueError("--syn_rim_mm shapes the ellipsoid model's clipping; the growth model is stopped by "
                             "the organ edge itself: drop it with --synthesis growth")
        from tumor_synthesis.organs import get_organ_profile
        from tumor_synthesis.growth import get_growth_rules

        for member in get_organ_profile(args.organ).members:
            get_growth_rules(member.name)  # raises, naming the organs the growth model has rules for


def check_learned_flags(synthesis: str, generator: str | None, steps: int | None) -> None:
    """The pairing of ``--synthesis``, ``--syn_generator`` and ``--syn_steps``, for every tool that takes them.

    ``main.py``, the realism tool and ``labelfree-synthesize`` share it, so the three refuse alike.

    Raises:
        ValueError: ``--synthesis gan`` or ``diffusion`` without ``--syn_generator``, and
            ``--syn_generator`` without one of them; ``--syn_steps`` without ``--synthesis
            diffusion`` or below 1.
    """
    if synthesis in LEARNED_SYNTHESIS and generator is None:
        model, written = (("generator", "generator.pt that syn_train.py") if synthesis == "gan" else
                          ("diffusion model", "diffusion.pt that syn_train.py --model diffusion"))
        raise ValueError(f"--synthesis {synthesis} repaints tumors with a trained {model}: give --syn_generator PATH "
                         f"(the {written} writes)")
    if generator is not None and synthesis not in LEARNED_SYNTHESIS:
        raise ValueError(f"--syn_generator is the learned model's weights: it needs --synthesis gan or diffusion "
                         f"(this run: --synthesis {synthesis})")
    if steps is not None:
        if synthesis != "diffusion":
            raise ValueError(f"--syn_steps is the diffusion model's sampling steps: it needs --synthesis diffusion "
                             f"(this run: --synthesis {synthesis})")
        if steps < 1:
            raise ValueError(f"--syn_steps must be at least 1, got {steps}")
