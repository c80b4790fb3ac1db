"""optimizers: LinearWarmupCosineAnnealingLR against its closed form, the optimizer factory."""

import math

import pytest
import torch

from labelfree.optimizers import LinearWarmupCosineAnnealingLR, build_optimizer, build_scheduler


def closed_form(epoch, base, warmup, max_epochs, start=0.0, eta_min=0.0):
    """Independent statement of the original schedule (linear ramp, then half a cosine)."""
    if epoch < warmup:
        return start + epoch * (base - start) / (warmup - 1)
    t = (epoch - warmup) / (max_epochs - warmup)
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * t)) / 2


def lr_sequence(scheduler, optimizer, n):
    values = []
    for _ in range(n):
        values.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return values


def make_optimizer(lrs=(4e-4,)):
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.AdamW(params)


@pytest.mark.parametrize("warmup,max_epochs,start,eta_min", [(5, 20, 0.0, 0.0), (3, 10, 1e-5, 1e-6), (2, 2, 0.0, 0.0)])
def test_warmup_cosine_matches_closed_form(warmup, max_epochs, start, eta_min):
    optimizer = make_optimizer((4e-4, 1e-3))
    scheduler = LinearWarmupCosineAnnealingLR(optimizer, warmup, max_epochs, warmup_start_lr=start, eta_min=eta_min)
    for epoch, lrs in enumerate(lr_sequence(scheduler, optimizer, max_epochs)):
        for lr, base in zip(lrs, (4e-4, 1e-3)):
            if max_epochs == warmup and epoch >= warmup:
                continue
            assert lr == pytest.approx(closed_form(epoch, base, warmup, max_epochs, start, eta_min), rel=1e-12, abs=1e-15)


def test_schedule_landmarks():
    optimizer = make_optimizer()
    scheduler = LinearWarmupCosineAnnealingLR(optimizer, warmup_epochs=10, max_epochs=110)
    lrs = [v[0] for v in lr_sequence(scheduler, optimizer, 111)]
    assert lrs[0] == 0.0  # the original's first epoch runs at warmup_start_lr
    assert lrs[9] == pytest.approx(4e-4) and lrs[10] == pytest.approx(4e-4)
    assert lrs[60] == pytest.approx(2e-4)  # half-way down the cosine
    assert lrs[110] == pytest.approx(0.0, abs=1e-18)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:110]))


def test_rate_holds_eta_min_after_max_epochs():
    # A run resumed with a larger --max_epochs keeps the checkpoint's schedule: past its end
    # the rate must stay at eta_min, not climb back up the cosine.
    optimizer = make_optimizer()
    scheduler = LinearWarmupCosineAnnealingLR(optimizer, warmup_epochs=2, max_epochs=6, eta_min=1e-6)
    lrs = [v[0] for v in lr_sequence(scheduler, optimizer, 12)]
    assert lrs[6:] == pytest.approx([1e-6] * 6)


def test_single_warmup_epoch_does_not_divide_by_zero():
    optimizer = make_optimizer()
    scheduler = LinearWarmupCosineAnnealingLR(optimizer, warmup_epochs=1, max_epochs=5)
    lrs = [v[0] for v in lr_sequence(scheduler, optimizer, 5)]
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(4e-4)


def test_state_dict_round_trip_continues_the_same_sequence():
    reference_opt = make_optimizer()
    reference = LinearWarmupCosineAnnealingLR(reference_opt, 4, 12)
    expected = lr_sequence(reference, reference_opt, 12)

    first_opt = make_optimizer()
    first = LinearWarmupCosineAnnealingLR(first_opt, 4, 12)
    lr_sequence(first, first_opt, 5)
    # What a checkpoint carries: both state dicts, restored into fresh objects.
    scheduler_state, optimizer_state = first.state_dict(), first_opt.state_dict()

    resumed_opt = make_optimizer()
    resumed = LinearWarmupCosineAnnealingLR(resumed_opt, 4, 12)
    resumed_opt.load_state_dict(optimizer_state)
    resumed.load_state_dict(scheduler_state)
    assert lr_sequence(resumed, resumed_opt, 7) == expected[5:]


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW), ("sgd", torch.optim.SGD)])
def test_build_optimizer(name, cls):
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(model.parameters(), name, lr=4e-4, weight_decay=1e-5)
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 4e-4 and group["weight_decay"] == 1e-5
    if name == "sgd":
        assert group["momentum"] == 0.99 and group["nesterov"] is True


def test_build_scheduler_variants():
    optimizer = make_optimizer()
    assert isinstance(build_scheduler(optimizer, "warmup_cosine", 3, 10), LinearWarmupCosineAnnealingLR)
    cosine = build_scheduler(make_optimizer(), "cosine_anneal", 3, 10)
    assert isinstance(cosine, torch.optim.lr_scheduler.CosineAnnealingLR) and cosine.T_max == 10
    assert build_scheduler(make_optimizer(), "none", 3, 10) is None
    with pytest.raises(ValueError, match="unknown lr schedule"):
        build_scheduler(optimizer, "step", 3, 10)
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(torch.nn.Linear(1, 1).parameters(), "lamb", 1e-3, 0.0)
