"""Where a training epoch's time goes: waiting for data vs computing, samples/s, peak memory.

:class:`StepTimer` is the loop's stopwatch (torchvision's ``MetricLogger`` idea): the time
between the end of one step and the arrival of the next batch is *data wait* (the loader
did not keep up), the time from a batch's arrival to the end of its step (``loss.item()``
synchronises CUDA) is *compute*. With ``--syn`` each sample also carries the seconds its
synthesis took in the loader worker (:class:`TimedTransform`), so the share of the loader's
work that is synthesis is visible too. A GPU whose data wait is a large fraction of the
step time is starved: more ``--workers``, or synthesis on the GPU.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Mapping

import torch
from labelfree.data.wrappers import SYNTHESIS_SECONDS_KEY


@dataclass
class EpochTiming:
    """One epoch's figures (seconds are totals over the epoch's steps on this process)."""

    steps: int
    samples: int
    data_wait_s: float
    compute_s: float
    synthesis_s: float
    synthesized: int
    peak_memory_bytes: int
    memory_kind: str

    @property
    def elapsed_s(self) -> float:
        return self.data_wait_s + self.compute_s

    @property
    def data_wait_fraction(self) -> float:
        return self.data_wait_s / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def scalars(self) -> dict[str, float]:
        """TensorBoard scalars (tags under ``time/`` and ``memory/``)."""
        steps = max(self.steps, 1)
        out = {
            "time/data_wait_s_per_step": self.data_wait_s / steps,
            "time/compute_s_per_step": self.compute_s / steps,
            "time/data_wait_fraction": self.data_wait_fraction,
            "time/samples_per_s": self.samples_per_s,
            f"memory/peak_{self.memory_kind}_gib": self.peak_memory_bytes / 2**30,
        }
        if self.synthesized:
            out["time/synthesis_s_per_sample"] = self.synthesis_s / self.synthesized
        return out

    def summary(self) -> str:
        """One log line: ``data 0.05 s/step (12%) | compute 0.38 s/step | 5.2 samples/s | ...``."""
        steps = max(self.steps, 1)
        parts = [
            f"data {self.data_wait_s / steps:.3f} s/step ({100 * self.data_wait_fraction:.0f}%)",
            f"compute {self.compute_s / steps:.3f} s/step",
            f"{self.samples_per_s:.3g} samples/s",
        ]
        if self.synthesized:
            parts.append(f"synthesis {1000 * self.synthesis_s / self.synthesized:.0f} ms/sample in the loader")
        parts.append(f"peak {self.memory_kind} {self.peak_memory_bytes / 2**30:.2f} GiB")
        return " | ".join(parts)


class StepTimer:
    """Stopwatch of one epoch's steps; call :meth:`batch_arrived` and :meth:`step_done` around each step."""

    def __init__(self, device: torch.device, clock: Callable[[], float] = time.perf_counter) -> None:
        """``clock``: seconds from an arbitrary origin (a stand-in makes the arithmetic testable)."""
        self.device = torch.device(device)
        self._clock = clock
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.steps = self.samples = self.synthesized = 0
        self.data_wait_s = self.compute_s = self.synthesis_s = 0.0
        self._mark = self._clock()

    def batch_arrived(self, batch: Mapping[Hashable, Any]) -> None:
        now = self._clock()
        self.data_wait_s += now - self._mark
        self._mark = now
        seconds = batch.get(SYNTHESIS_SECONDS_KEY) if isinstance(batch, Mapping) else None
        if seconds is not None:
            seconds = torch.as_tensor(seconds, dtype=torch.float64).reshape(-1)
            self.synthesis_s += float(seconds.sum())
            self.synthesized += int(seconds.numel())

    def step_done(self, samples: int) -> None:
        """End of a step (after a host synchronisation such as ``loss.item()``)."""
        now = self._clock()
        self.compute_s += now - self._mark
        self._mark = now
        self.steps += 1
        self.samples += int(samples)

    def postfix(self) -> str:
        """Short progress-bar text: data-wait share and throughput so far."""
        elapsed = self.data_wait_s + self.compute_s
        if elapsed <= 0:
            return ""
        return f"data {100 * self.data_wait_s / elapsed:.0f}% {self.samples / elapsed:.3g} samples/s"

    def finish(self) -> EpochTiming:
        if self.device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(self.device), "cuda"
        else:
            peak, kind = peak_rss_bytes(), "rss"
        return EpochTiming(self.steps, self.samples, self.data_wait_s, self.compute_s, self.synthesis_s,
                           self.synthesized, int(peak), kind)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (the loader workers are separate processes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
