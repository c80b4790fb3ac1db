"""labelfree.training.step_timer: data-wait vs compute accounting, synthesis timing that leaves seeding intact."""

from __future__ import annotations

import numpy as np
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


class FakeClock:
    """A clock that moves only when told to: the timer's arithmetic is checked exactly, whatever the load."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_the_timer_splits_waiting_from_computing():
    clock = FakeClock()
    timer = StepTimer(torch.device("cpu"), clock=clock)
    waits, computes = (0.25, 0.5, 0.125), (0.5, 0.25, 1.0)  # binary fractions: sums are exact
    for wait, compute in zip(waits, computes):
        clock.advance(wait)  # the loader
        timer.batch_arrived({SYNTHESIS_SECONDS_KEY: torch.tensor([2.0**-7, 2.0**-8])})  # 7.8 and 3.9 ms
        clock.advance(compute)  # the step
        timer.step_done(samples=2)
    assert timer.postfix() == "data 33% 2.29 samples/s"
    t = timer.finish()
    assert t.steps == 3 and t.samples == 6 and t.synthesized == 6
    assert t.data_wait_s == sum(waits) == 0.875 and t.compute_s == sum(computes) == 1.75
    assert t.elapsed_s == 2.625 and t.data_wait_fraction == 1 / 3
    assert t.samples_per_s == 6 / 2.625
    assert t.synthesis_s == 3 * (2.0**-7 + 2.0**-8)
    assert t.memory_kind == "rss" and t.peak_memory_bytes > 10 * 2**20
    scalars = t.scalars()
    assert scalars["time/data_wait_s_per_step"] == 0.875 / 3 and scalars["time/compute_s_per_step"] == 1.75 / 3
    assert scalars["time/synthesis_s_per_sample"] == (2.0**-7 + 2.0**-8) / 2
    assert t.summary().startswith("data 0.292 s/step (33%) | compute 0.583 s/step | 2.29 samples/s | "
                                  "synthesis 6 ms/sample in the loader | peak rss ")


def test_time_before_the_first_batch_is_data_wait_and_an_idle_timer_reports_zero():
    clock = FakeClock()
    timer = StepTimer(torch.device("cpu"), clock=clock)
    assert timer.postfix() == "" and timer.finish().samples_per_s == 0.0 and timer.finish().data_wait_fraction == 0.0
    clock.advance(2.0)  # e.g. the loader workers starting
    timer.batch_arrived({})  # no synthesis key: nothing synthesized
    clock.advance(1.0)
    timer.step_done(samples=4)
    t = timer.finish()
    assert (t.data_wait_s, t.compute_s, t.synthesized, t.synthesis_s) == (2.0, 1.0, 0, 0.0)
    assert "time/synthesis_s_per_sample" not in t.scalars() and "synthesis" not in t.summary()


def test_timed_synthesis_draws_the_same_tumors_as_the_bare_transform():
    bare = Compose([TumorGenerated(prob=1.0, organ="liver")]).set_random_state(seed=3)
    timed = Compose([TimedTransform(TumorGenerated(prob=1.0, organ="liver"))]).set_random_state(seed=3)
    for _ in range(2):
        a, b = bare(_case()), timed(_case())
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
        assert b[SYNTHESIS_SECONDS_KEY] > 0 and SYNTHESIS_SECONDS_KEY not in a
    assert (b["label"] == 2).any()
