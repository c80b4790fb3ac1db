"""Wrappers around the synthesis transform of the training pipeline: timing it, keeping a healthy copy.

Both run the wrapped random transform with something around it, after the cache: the loader
worker's synthesis seconds (read by :mod:`labelfree.training.step_timer`) and the healthy
original that quality control (:mod:`labelfree.training.quality_control`) reverts to.
"""

from __future__ import annotations

import time
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.transforms import RandomizableTransform


#: Batch key of the per-sample synthesis seconds (added by :class:`TimedTransform`).
SYNTHESIS_SECONDS_KEY = "synthesis_seconds"


class WrappedRandomTransform(RandomizableTransform):
    """Base of a transform that runs a wrapped random transform with something around it.

    It is a ``RandomizableTransform`` so that ``CacheDataset`` never caches it, and it hands
    ``set_random_state`` to the wrapped transform, so seeding behaves as without the wrapper.
    """

    def __init__(self, transform) -> None:
        RandomizableTransform.__init__(self, prob=1.0)
        self.transform = transform

    def set_random_state(self, seed: int | None = None, state=None) -> "WrappedRandomTransform":
        self.transform.set_random_state(seed=seed, state=state)
        return self

    def randomize(self, data: Any = None) -> None:  # the wrapped transform draws its own numbers
        pass


class TimedTransform(WrappedRandomTransform):
    """Runs a random dictionary transform and records its wall time in ``data[key]`` (seconds)."""

    def __init__(self, transform, key: str = SYNTHESIS_SECONDS_KEY) -> None:
        super().__init__(transform)
        self.key = key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        start = time.perf_counter()
        out = dict(self.transform(data))
        out[self.key] = time.perf_counter() - start
        return out


HEALTHY_IMAGE_KEY = "image_healthy"


HEALTHY_LABEL_KEY = "label_healthy"


class HealthyCopy(WrappedRandomTransform):
    """Copies ``image`` / ``label`` to the healthy keys, then runs the wrapped synthesis transform.

    Random (a ``WrappedRandomTransform``), so that ``CacheDataset`` never caches the copy: it is
    made per draw, after the cache.
    """

    def __init__(self, transform, keys: Sequence[str] = ("image", "label"),
                 names: Sequence[str] = (HEALTHY_IMAGE_KEY, HEALTHY_LABEL_KEY)) -> None:
        super().__init__(transform)
        self.keys, self.names = tuple(keys), tuple(names)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, name in zip(self.keys, self.names):
            # A real copy: synthesis paints the originals in place.
            d[name] = d[key].clone() if isinstance(d[key], torch.Tensor) else np.array(d[key], copy=True)
        return dict(self.transform(d))
