"""Diffusion synthesis: the painting invariants, one training step, seeded sampling, windows around the tumors."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy import ndimage

from tumor_synthesis.diffusion import (
    DiffusionConfig,
    TumorDiffusion,
    paint_windows,
    tumor_windows,
)

LIVER = DiffusionConfig(organ="liver", window=(-21.0, 189.0), spacing=(3.0, 3.0, 3.0), sign=-1, channels=(8, 16),
                        roi=(16, 16, 16), steps=3)


def _random_model(config=LIVER, seed=0):
    """A model far from its initialisation: large, varied velocities (brighter and darker)."""
    torch.manual_seed(seed)
    model = TumorDiffusion(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def _volume(shape=(2, 1, 20, 24, 12), seed=0):
    """Healthy crops in [0, 1], an organ block, two tumors in crop 0 (one crossing the organ edge), one outside
    the organ in crop 1."""
    g = torch.Generator().manual_seed(seed)
    healthy = 0.3 + 0.4 * torch.rand(shape, generator=g)
    organ = torch.zeros(shape, dtype=torch.bool)
    organ[:, :, 2:18, 2:22, 1:11] = True
    tumor = torch.zeros_like(organ)
    tumor[0, 0, 5:9, 5:9, 4:8] = True
    tumor[0, 0, 15:20, 18:24, 3:6] = True  # partly outside the organ, and at the array's edge
    tumor[-1, 0, 0:2, 0:2, 0:2] = True  # outside the organ only (crop 1 of 2)
    return healthy, tumor, organ


@pytest.mark.parametrize("sign", [-1, 1])
def test_painting_changes_nothing_outside_tumor_and_organ_and_keeps_the_profile_sign(sign):
    config = DiffusionConfig(**{**LIVER.__dict__, "sign": sign})
    healthy, tumor, organ = _volume()
    painted = paint_windows(_random_model(config), healthy, tumor, organ, steps=3,
                            generator=torch.Generator().manual_seed(1))
    region = tumor & organ
    assert torch.equal(painted[~region], healthy[~region])  # bit for bit
    change = (painted - healthy)[region]
    assert bool((change != 0).any())  # it painted something
    assert (change * sign >= 0).all() and change.abs().max() <= config.max_offset + 1e-6
    assert painted.min() >= 0 and painted.max() <= 1


def test_sampling_is_reproducible_for_a_seed_and_differs_between_seeds():
    healthy, tumor, organ = _volume()
    model = _random_model()

    def paint(seed):
        return paint_windows(model, healthy, tumor, organ, steps=3, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(paint(7), paint(7))
    assert not torch.equal(paint(7), paint(8))


def test_the_known_region_is_the_flow_path_of_the_healthy_crop():
    """With no region to paint, the sampler's output is the healthy crop (the known voxels are never invented)."""
    healthy, _, _ = _volume()
    nothing = torch.zeros_like(healthy, dtype=torch.bool)
    out = _random_model().sample(healthy, nothing, steps=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, healthy)


def test_one_training_step_lowers_the_loss_on_a_fixed_batch():
    healthy, tumor, _ = _volume(shape=(2, 1, 16, 16, 16))
    image = torch.where(tumor, healthy - 0.2, healthy).clamp(0, 1)
    torch.manual_seed(0)
    model = TumorDiffusion(LIVER)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)

    def loss():  # the same noise and flow times every time: a fixed batch
        return model.training_loss(image, tumor, torch.Generator().manual_seed(3))

    before = loss()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    with torch.no_grad():
        after = loss()
    assert after.item() < before.item()


def test_the_loss_counts_only_the_tumor_voxels():
    """A crop without tumor teaches nothing: its loss is 0, whatever the network predicts elsewhere."""
    healthy, _, _ = _volume(shape=(1, 1, 16, 16, 16))
    model = TumorDiffusion(LIVER)
    nothing = torch.zeros_like(healthy, dtype=torch.bool)
    assert model.training_loss(healthy, nothing, torch.Generator().manual_seed(0)).item() == 0.0


def test_windows_group_tumors_that_fit_the_crop_and_give_a_large_one_its_own():
    region = np.zeros((60, 40, 30), bool)
    region[5:8, 5:8, 5:8] = True
    region[10:13, 9:12, 5:8] = True  # near the first: the same window
    region[30:55, 5:35, 2:28] = True  # larger than the crop: its own window, rounded up to the divisor
    windows = tumor_windows(region, roi=(16, 16, 16), divisor=4, margin=2)
    assert len(windows) == 2
    (_, size_a, writes_a), (_, size_b, writes_b) = windows
    assert size_a == (16, 16, 16)
    assert size_b == (32, 36, 32)  # 25 + 4 -> 32, 30 + 4 -> 36, 26 + 4 -> 32
    assert writes_a.sum() == 54 and writes_b.sum() == 25 * 30 * 26 and not (writes_a & writes_b).any()
    for start, size, writes in windows:  # every voxel a window writes lies inside it
        inside = np.zeros_like(region)
        lo = np.maximum(start, 0)
        inside[tuple(slice(int(a), int(s + z)) for a, s, z in zip(lo, start, size))] = True
        assert not (writes & ~inside).any()
    assert ndimage.label(region)[1] == 3


@pytest.mark.parametrize("bad, message", [
    ({"sign": 0}, "sign must be -1 or +1"),
    ({"channels": (8, 12)}, "multiples of 8"),
    ({"roi": (16, 16, 17)}, "must be a multiple of 2"),
    ({"steps": 0}, "sampling steps must be in 1..1000"),
])
def test_the_config_refuses_what_cannot_work(bad, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        DiffusionConfig(**{**LIVER.__dict__, **bad})


def test_the_config_round_trips_through_a_plain_dict():
    assert DiffusionConfig.from_dict(LIVER.to_dict()) == LIVER
