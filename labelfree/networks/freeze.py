"""Frozen networks: a segmentor, generator or discriminator used but not trained by a step.

A frozen network runs in evaluation mode (fixed normalisation statistics, no dropout) and
its parameters take no gradients, so a loss backpropagated through it updates only the
network being trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in evaluation mode with ``requires_grad`` off for every parameter (in place; returned)."""
    model.eval()
    set_requires_grad(model, False)
    return model


def set_requires_grad(model: torch.nn.Module, flag: bool) -> None:
    """Switch gradients of every parameter of ``model`` on or off."""
    for p in model.parameters():
        p.requires_grad_(flag)


@contextlib.contextmanager
def gradients_off(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within: ``model``'s parameters take no gradients (its train/eval mode is kept); after: they do again.

    For a network that one update of an alternating scheme uses but does not train (the
    discriminator during the generator's update).
    """
    set_requires_grad(model, False)
    try:
        yield model
    finally:
        set_requires_grad(model, True)
