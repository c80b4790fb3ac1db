"""Learned tumor intensity by diffusion: a conditional inpainting model paints the engine's tumor shapes.

As with the adversarial generator (:mod:`tumor_synthesis.learned`), the engine decides *where*
tumors are and *what shape* they have; the model decides *how they look*. It is MONAI's
``DiffusionModelUNet`` with rectified-flow sampling (``RFlowScheduler``; DiffTumor and MAISI use
the same family), in pixel space, conditioned by input channels (intensities windowed to
[0, 1], then mapped to [-1, 1] for the network):

1. the noisy crop being denoised (x_t),
2. the crop with the tumor region blanked (0: the middle of the window),
3. the tumor region (1 inside, 0 outside).

Training (:meth:`TumorDiffusion.training_loss`) sees crops of *real* tumor cases and learns the
velocity ``x0 - noise`` of the flow ``x_t = (1 - t/T) x0 + (t/T) noise`` on the tumor voxels
only: the intensities of a real tumor given its healthy surroundings and its mask.

Sampling (:meth:`TumorDiffusion.sample`) integrates the flow in a few steps (``steps``, e.g. 4,
10, 30) from noise; outside the region the crop is, at every step, the healthy crop noised to
the same time with the same noise (the path training saw), so only the region is invented. The
painted crop keeps every voxel outside ``tumor mask & organ`` (the engine's invariant: nothing
outside the organ changes), and inside it the change is bounded by the organ profile's sign:
``healthy + clamp(sample - healthy)`` within ``[-max_offset, 0]`` for tumors darker than the
organ (liver, pancreas, kidney), ``[0, max_offset]`` for brighter ones (lung nodules).

A model paints windows of its training crop size around the tumors (:func:`paint_windows`),
not the whole crop or volume: the cost follows the tumors, and the network sees the context
size it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import RFlowScheduler
from scipy import ndimage

from tumor_synthesis.painter_config import PainterConfig

#: Input channels of the network: x_t, the blanked crop, the tumor region.
IN_CHANNELS = 3
#: GroupNorm groups of the network (every level's channels must be a multiple).
NORM_GROUPS = 8


@dataclass(frozen=True)
class DiffusionConfig(PainterConfig):
    """What a trained diffusion model was made for; stored in its model file.

    Attributes (besides :class:`~tumor_synthesis.painter_config.PainterConfig`'s organ, window,
    spacing, sign, max_offset_hu and channels; here channels must be multiples of 8, GroupNorm):
        roi: crop size (voxels) it was trained on; it paints windows of this size.
        train_timesteps: the flow's time resolution (timesteps are integers 1..T).
        steps: default number of sampling steps.
    """

    roi: tuple[int, int, int] = (32, 32, 32)
    train_timesteps: int = 1000
    steps: int = 10

    kind_name: ClassVar[str] = "diffusion model"

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(c % NORM_GROUPS for c in self.channels):
            raise ValueError(f"the diffusion UNet needs channels that are multiples of {NORM_GROUPS}, "
                             f"got {self.channels}")
        if any(r % self.divisor for r in self.roi):
            raise ValueError(f"crop size {self.roi} must be a multiple of {self.divisor} ({len(self.channels)} levels)")
        if not 1 <= self.steps <= self.train_timesteps:
            raise ValueError(f"sampling steps must be in 1..{self.train_timesteps}, got {self.steps}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DiffusionConfig:
        return cls(**PainterConfig.shared_fields(d), roi=tuple(int(r) for r in d["roi"]),
                   train_timesteps=int(d["train_timesteps"]), steps=int(d["steps"]))


def build_unet(config: DiffusionConfig) -> DiffusionModelUNet:
    """MONAI's diffusion UNet, small: one residual block per level, no attention (its cost is cubic crops)."""
    n = len(config.channels)
    return DiffusionModelUNet(spatial_dims=3, in_channels=IN_CHANNELS, out_channels=1, num_res_blocks=1,
                              channels=config.channels, attention_levels=(False,) * n, norm_num_groups=NORM_GROUPS)


def randn(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise drawn on the CPU from ``generator`` (the same numbers on every device)."""
    return torch.randn(tuple(shape), generator=generator).to(device)


class TumorDiffusion(torch.nn.Module):
    """The network, its flow and its painting rule (see the module docstring)."""

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        self.net = build_unet(config)

    def scheduler(self) -> RFlowScheduler:
        return RFlowScheduler(num_train_timesteps=self.config.train_timesteps, use_discrete_timesteps=True,
                              sample_method="uniform")

    @staticmethod
    def conditioning(healthy: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """(B, 2, H, W, D): the crop in [-1, 1] with the region blanked, and the region."""
        known = 2.0 * healthy.float() - 1.0
        return torch.cat([torch.where(region, 0.0, known), region.float()], dim=1)

    def velocity(self, x_t: torch.Tensor, condition: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x_t.to(condition.dtype), condition], dim=1), t).float()

    def forward(self, image: torch.Tensor, tumor: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss (:meth:`training_loss`), so that DistributedDataParallel wraps it."""
        return self.training_loss(image, tumor, generator)

    def training_loss(self, image: torch.Tensor, tumor: torch.Tensor,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared velocity error over the tumor voxels of a batch of real crops.

        Args:
            image: (B, 1, H, W, D) crops windowed to [0, 1].
            tumor: (B, 1, H, W, D) bool, the real tumor voxels (what is painted at sampling).
            generator: the source of noise and times (CPU); None: torch's global one.
        """
        x0 = 2.0 * image.float() - 1.0
        noise = randn(x0.shape, generator, x0.device)
        t = torch.randint(1, self.config.train_timesteps + 1, (x0.shape[0],), generator=generator).to(x0.device)
        x_t = self.scheduler().add_noise(x0, noise, t)
        v = self.velocity(x_t, self.conditioning(image, tumor), t)
        weight = tumor.float()
        return (((v - (x0 - noise)) ** 2) * weight).sum() / weight.sum().clamp_min(1.0)

    @torch.no_grad()
    def sample(self, healthy: torch.Tensor, region: torch.Tensor, steps: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The painted crops (B, 1, H, W, D) in [0, 1]: only ``region`` voxels change, within the sign's bound.

        Args:
            healthy: (B, 1, H, W, D) crops windowed to [0, 1].
            region: (B, 1, H, W, D) bool, the voxels to paint (tumor mask and organ).
            steps: sampling steps (None: the config's).
            generator: the only source of randomness (CPU); a seed reproduces the sample.
        """
        c = self.config
        known = 2.0 * healthy.float() - 1.0
        condition = self.conditioning(healthy, region)
        noise = randn(known.shape, generator, known.device)
        scheduler = self.scheduler()
        scheduler.set_timesteps(int(steps or c.steps), device=known.device)
        times = scheduler.timesteps
        x = noise
        for i, t in enumerate(times):
            t_batch = t.expand(known.shape[0])
            # Outside the region: the healthy crop on the flow's path at this time (what training saw).
            x = torch.where(region, x, scheduler.add_noise(known, noise, t_batch))
            next_t = int(times[i + 1]) if i + 1 < len(times) else 0
            x, _ = scheduler.step(self.velocity(x, condition, t_batch), int(t), x, next_t)
        offset = (x + 1.0) / 2.0 - healthy.float()
        offset = offset.clamp(-c.max_offset, 0.0) if c.sign < 0 else offset.clamp(0.0, c.max_offset)
        # The window clips real CT to [0, 1]; a painted voxel beyond it would be a give-away.
        return torch.where(region, (healthy.float() + offset).clamp(0.0, 1.0), healthy.float())


# ------------------------------------------------------------------ windows around the tumors
@dataclass
class Window:
    """One window to paint: crop ``index`` of the batch, ``start`` voxel and ``size`` per axis, and the
    tumor components (a bool (H, W, D) mask, host) it writes back."""

    index: int
    start: tuple[int, int, int]
    size: tuple[int, int, int]
    writes: np.ndarray = field(repr=False)


def tumor_windows(region: np.ndarray, roi: Sequence[int], divisor: int, margin: int = 4) -> list[tuple]:
    """Windows covering the tumor components of one (H, W, D) region: ``(start, size, components mask)``.

    Components are grouped greedily while their joint bounding box, plus ``margin`` voxels of
    context on each side, fits ``roi``; a component larger than that gets a window of its own,
    its box plus the margin rounded up to ``divisor``. Starts may be negative or windows run
    past the array (the caller pads).
    """
    components, n = ndimage.label(region)
    if n == 0:
        return []
    boxes = ndimage.find_objects(components)
    roi = np.asarray(roi, dtype=int)
    groups: list[list] = []  # [lo, hi, [component ids]]
    for k, box in enumerate(boxes, start=1):
        lo, hi = np.array([s.start for s in box]), np.array([s.stop for s in box])
        for group in groups:
            joint_lo, joint_hi = np.minimum(group[0], lo), np.maximum(group[1], hi)
            if np.all(joint_hi - joint_lo + 2 * margin <= roi):
                group[0], group[1] = joint_lo, joint_hi
                group[2].append(k)
                break
        else:
            groups.append([lo, hi, [k]])
    windows = []
    for lo, hi, ids in groups:
        need = hi - lo + 2 * margin
        size = np.maximum(roi, -(-need // divisor) * divisor)
        start = (lo + hi) // 2 - size // 2
        windows.append((tuple(int(s) for s in start), tuple(int(s) for s in size), np.isin(components, ids)))
    return windows


@torch.no_grad()
def paint_windows(model: TumorDiffusion, healthy: torch.Tensor, tumor: torch.Tensor, organ: torch.Tensor,
                  steps: int | None = None, generator: torch.Generator | None = None,
                  amp: bool = False) -> torch.Tensor:
    """Paint the tumors of a batch of (B, 1, H, W, D) crops or volumes in windows around them.

    Windows of the same size (all that fit the training crop) are sampled as one batch. The
    arrays are padded (edge values; masks with 0) where a window runs past them.

    Args:
        healthy: crops windowed to [0, 1].
        tumor: bool, the tumor voxels to paint (the engine's shapes).
        organ: bool, the organ voxels; nothing outside them changes.
        steps: sampling steps (None: the model's default).
        generator: the only source of randomness (CPU).
        amp: autocast the network (CUDA).

    Returns:
        The painted crops; voxels outside ``tumor & organ`` are ``healthy``'s.
    """
    c = model.config
    region = tumor & organ
    host = region[:, 0].cpu().numpy()
    windows = [Window(b, start, size, writes) for b in range(host.shape[0])
               for start, size, writes in tumor_windows(host[b], c.roi, c.divisor)]
    painted = healthy.float().clone()
    if not windows:
        return painted
    spatial = np.array(healthy.shape[2:])
    lo_pad = np.maximum(0, -np.min([w.start for w in windows], axis=0))
    hi_pad = np.maximum(0, np.max([np.add(w.start, w.size) for w in windows], axis=0) - spatial)
    pad = [int(p) for axis in (2, 1, 0) for p in (lo_pad[axis], hi_pad[axis])]  # F.pad: last axis first

    def padded(x: torch.Tensor, mode: str) -> torch.Tensor:
        if not any(pad):
            return x
        if mode == "replicate":
            return torch.nn.functional.pad(x.float(), pad, mode="replicate")
        return torch.nn.functional.pad(x.float(), pad, value=0.0) > 0.5

    big_healthy, big_region = padded(healthy.float(), "replicate"), padded(region, "zeros")
    out = big_healthy.clone()
    by_size: dict[tuple, list[Window]] = {}
    for w in windows:
        by_size.setdefault(w.size, []).append(w)
    for size, group in by_size.items():
        boxes = [tuple(slice(int(s + lo_pad[a]), int(s + lo_pad[a] + size[a])) for a, s in enumerate(w.start))
                 for w in group]
        h = torch.stack([big_healthy[w.index][(slice(None),) + box] for w, box in zip(group, boxes)])
        r = torch.stack([big_region[w.index][(slice(None),) + box] for w, box in zip(group, boxes)])
        with torch.autocast(h.device.type, enabled=amp):
            sampled = model.sample(h, r, steps, generator)
        for k, (w, box) in enumerate(zip(group, boxes)):
            writes = torch.from_numpy(np.pad(w.writes, [(int(lo_pad[a]), int(hi_pad[a])) for a in range(3)]))
            keep = writes[box].to(out.device)[None]
            target = out[w.index][(slice(None),) + box]
            target.copy_(torch.where(keep, sampled[k], target))
    crop = tuple(slice(int(lo_pad[a]), int(lo_pad[a] + spatial[a])) for a in range(3))
    painted = out[(slice(None), slice(None)) + crop]
    return torch.where(region, painted, healthy.float())


@dataclass
class DiffusionState:
    """The parts of a diffusion model file ``main.py`` needs."""

    config: DiffusionConfig
    weights: dict[str, torch.Tensor] = field(repr=False)

    def build(self, device: torch.device | str = "cpu") -> TumorDiffusion:
        model = TumorDiffusion(self.config)
        model.net.load_state_dict(self.weights, strict=True)
        return model.to(device)
