"""A trained painter repaints the engine's tumors of one whole case, in HU.

The painting of ``--synthesis gan`` / ``diffusion`` outside the training step: the ellipsoid
engine (``TumorGenerated``) has painted a case; the trained model (the generator of
:mod:`tumor_synthesis.learned` or the diffusion model of :mod:`tumor_synthesis.diffusion`) then
repaints its tumor voxels. Shared by the realism tool (``labelfree.apps.realism.cli``) and the
offline dataset generator (``labelfree.apps.offline``), so both paint alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tumor_synthesis.diffusion import TumorDiffusion, paint_windows
from tumor_synthesis.learned import TumorGenerator, paint_volume, synthetic_tumor_mask


def repaint_case(model: TumorGenerator | TumorDiffusion, healthy_image, healthy_label, engine_image, engine_label,
                 window: Sequence[float], tumor_labels: Sequence[int], steps: int | None = None,
                 noise: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The engine's tumors of one case repainted by ``model``; only organ voxels change.

    The case is windowed to [0, 1] with ``window``; the generator paints it in sliding windows
    of its training crop (:func:`~tumor_synthesis.learned.paint_volume`), the diffusion model
    windows of its training crop around the tumors (:func:`~tumor_synthesis.diffusion.paint_windows`).
    Voxels the model leaves as they are keep their healthy HU exactly (no round trip through
    the window), so the engine's own change is undone everywhere the model did not paint.

    Args:
        model: the trained painter, in eval mode, on the device it paints on.
        healthy_image: (1, H, W, D) HU of the healthy case (array or tensor, on the CPU).
        healthy_label: (1, H, W, D) its labels (organ voxels > 0, no tumor).
        engine_image: (1, H, W, D) HU the engine painted into that case.
        engine_label: (1, H, W, D) the engine's labels (its tumors).
        window: ``(a_min, a_max)`` HU the model's crops were windowed with.
        tumor_labels: label values of tumors (the organ profile's).
        steps: diffusion sampling steps (None: the model's default); the generator has none.
        noise: the diffusion sampling's only source of randomness (a CPU generator: the same
            numbers on every device); None: torch's global one.

    Returns:
        ``(image, label)`` on the CPU: the healthy HU (float32) with the painted voxels, and the
        engine's label with its tumor voxels outside the organ back to background (the model
        paints inside the organ only).
    """
    a_min, a_max = window
    width = a_max - a_min
    device = next(model.parameters()).device

    def windowed(x) -> torch.Tensor:
        return ((torch.as_tensor(x).float() - a_min) / width).clamp(0.0, 1.0)[None]

    healthy_label = torch.as_tensor(healthy_label)
    label = torch.as_tensor(engine_label)
    mask = synthetic_tumor_mask(label[None], healthy_label[None], tumor_labels)
    organ = healthy_label[None] > 0
    healthy = windowed(healthy_image)
    if isinstance(model, TumorDiffusion):
        painted = paint_windows(model, healthy.to(device), mask.to(device), organ.to(device), steps, noise)
    else:
        painted = paint_volume(model, healthy.to(device), windowed(engine_image).to(device), mask.to(device),
                               organ.to(device))
    painted = painted.cpu()
    changed = painted != healthy
    image = torch.as_tensor(healthy_image).float().clone()
    image[changed[0]] = (a_min + painted * width)[changed]
    label = label.clone()
    label[(label != healthy_label) & ~organ[0]] = 0  # painted inside the organ only
    return image, label
