"""labelfree.training.step_timer: data-wait vs compute accounting, synthesis timing that leaves seeding intact."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from labelfree.training.step_timer import StepTimer

from labelfree.data.wrappers import SYNTHESIS_SECONDS_KEY, TimedTransform
from tumor_synthesis import TumorGenerated


def _case():
    image = np.full((1, 48, 48, 40), 100.0, np.float32)
    label = np.zeros((1, 48, 48, 40), np.uint8)
    label[0, 8:40, 8:40, 6:34] = 1
    return {"image": image, "label": label}


def test_the_timer_splits_waiting_from_computing():
    timer = StepTimer(torch.device("cpu"))
    for _ in range(3):
        time.sleep(0.02)  # the loader
        timer.batch_arrived({SYNTHESIS_SECONDS_KEY: torch.tensor([0.005, 0.007])})
        time.sleep(0.04)  # the step
        timer.step_done(samples=2)
    t = timer.finish()
    assert t.steps == 3 and t.samples == 6 and t.synthesized == 6
    assert t.data_wait_s == pytest.approx(0.06, abs=0.03) and t.compute_s == pytest.approx(0.12, abs=0.04)
    assert t.data_wait_fraction == pytest.approx(1 / 3, abs=0.1)
    assert t.samples_per_s == pytest.approx(6 / (t.data_wait_s + t.compute_s))
    assert t.synthesis_s == pytest.approx(0.036)
    assert t.memory_kind == "rss" and t.peak_memory_bytes > 10 * 2**20
    scalars = t.scalars()
    assert scalars["time/synthesis_s_per_sample"] == pytest.approx(0.006)
    assert "data 0.0" in t.summary() and "synthesis 6 ms/sample" in t.summary()


def test_timed_synthesis_draws_the_same_tumors_as_the_bare_transform():
    bare = Compose([TumorGenerated(prob=1.0, organ="liver")]).set_random_state(seed=3)
    timed = Compose([TimedTransform(TumorGenerated(prob=1.0, organ="liver"))]).set_random_state(seed=3)
    for _ in range(2):
        a, b = bare(_case()), timed(_case())
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
        assert b[SYNTHESIS_SECONDS_KEY] > 0 and SYNTHESIS_SECONDS_KEY not in a
    assert (b["label"] == 2).any()
