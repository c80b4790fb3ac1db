"""labelfree.runtime.timing: interleaved medians, untimed warm-up, device sync in the span; the measured checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labelfree.runtime.timing import median_seconds, median_seconds_each


class ScriptedClock:
    """A clock that each callable moves by a scripted duration: the medians are known exactly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.events: list[str] = []

    def __call__(self) -> float:
        return self.now

    def work(self, name: str, seconds: float):
        def run():
            self.events.append(name)
            self.now += seconds
        return run


def test_each_callable_gets_the_median_of_its_own_runs_taking_turns_after_its_warm_up():
    clock = ScriptedClock()
    durations = {"a": iter([9.0, 1.0, 5.0, 3.0]), "b": iter([7.0, 0.5, 0.25, 4.0])}  # first: the warm-up

    def step(name):
        def run():
            clock.events.append(name)
            clock.now += next(durations[name])
        return run

    medians = median_seconds_each({"a": step("a"), "b": step("b")}, repeats=3, clock=clock)
    assert medians == {"a": 3.0, "b": 0.5}  # medians of (1, 5, 3) and (0.5, 0.25, 4): warm-ups left out
    assert clock.events == ["a", "b", "a", "b", "a", "b", "a", "b"]


def test_sync_runs_inside_the_timed_span_so_queued_work_counts():
    clock = ScriptedClock()
    queued = []

    def launch():  # an asynchronous launch: returns at once, the work lands on the next sync
        queued.append(2.0)

    def sync():
        clock.now += sum(queued)
        queued.clear()

    assert median_seconds(launch, repeats=3, sync=sync, warmup=0, clock=clock) == 2.0
    assert median_seconds(launch, repeats=3, warmup=0, clock=clock) == 0.0  # without sync: nothing measured


def test_warm_up_count_and_bad_repeats():
    clock = ScriptedClock()
    fn = clock.work("f", 1.0)
    assert median_seconds(fn, repeats=2, warmup=3, clock=clock) == 1.0
    assert clock.events == ["f"] * 5
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        median_seconds(fn, repeats=0)


def test_the_real_clock_measures_real_work():
    assert median_seconds(lambda: sum(range(10_000)), repeats=3) > 0.0


def test_measured_checkout_names_the_folder_whose_packages_are_imported(tmp_path):
    """What a benchmark prints: the checkout first on the path, not the one the script sits in."""
    other = tmp_path / "other_checkout"
    (other / "tumor_synthesis").mkdir(parents=True)
    (other / "tumor_synthesis" / "__init__.py").write_text("")
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(other), str(root)])}
    code = "from labelfree.runtime.timing import measured_checkout; print(measured_checkout())"
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == str(other.resolve())
    env["PYTHONPATH"] = str(root)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == str(root)
