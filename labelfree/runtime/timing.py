"""Median wall-clock time of callables: the one timing rule of the benchmarks and the GPU check.

A median over repeated runs ignores the odd run that a busy machine slows down; a warm-up
call first keeps one-off costs (lazy imports, allocator growth, kernel compilation, cuDNN
autotuning) out of the figure. Several callables timed together take turns within every
round, so a change of machine load hits them all alike and their ratios stay meaningful.
:func:`measured_checkout` names the code a benchmark measured.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def median_seconds_each(
    fns: Mapping[str, Callable[[], object]],
    repeats: int,
    sync: Callable[[], object] | None = None,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median wall time (s) of each ``fns[name]()`` over ``repeats`` interleaved rounds.

    Args:
        fns: the callables by name (their results are discarded).
        repeats: timed runs of each callable (>= 1).
        sync: called right before the clock starts and right before it stops (e.g.
            ``torch.cuda.synchronize``), so that device work queued by a run is counted in it.
        warmup: untimed calls of each callable before the first round.
        clock: seconds from an arbitrary origin.

    Returns:
        ``{name: median seconds}``, in the order of ``fns``.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync is not None:
                sync()
            start = clock()
            fn()
            if sync is not None:
                sync()
            times[name].append(clock() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def median_seconds(
    fn: Callable[[], object],
    repeats: int,
    sync: Callable[[], object] | None = None,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` runs: :func:`median_seconds_each` of one callable."""
    return median_seconds_each({"fn": fn}, repeats, sync=sync, warmup=warmup, clock=clock)["fn"]


def measured_checkout() -> str:
    """The checkout folder this process imports ``tumor_synthesis`` from (``labelfree`` sits beside it).

    Benchmarks print it: with the project installed editable, a benchmark script run from
    another checkout (say, an older commit beside it for an A/B) imports the installed
    checkout's packages, since a script's own folder, not the working directory, starts
    ``sys.path``; ``PYTHONPATH=<checkout>`` makes it measure its own.
    """
    from importlib.util import find_spec
    from pathlib import Path

    return str(Path(find_spec("tumor_synthesis").origin).resolve().parents[1])
