"""Datasets, samplers and loaders for training and in-training validation."""

from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset
from monai.data.utils import set_rnd
from torch.utils.data import Sampler
from torch.utils.data.distributed import DistributedSampler

from labelfree.runtime.distributed import DistContext
from labelfree.runtime.interrupt import worker_init_fn

#: Key added to every datalist entry: the entry's position in the datalist. Validation
#: uses it to merge per-case results of all ranks; the training log of --log_case_indices
#: uses it to show which cases each rank drew.
CASE_INDEX_KEY = "case_index"


def with_case_index(items: Sequence[dict]) -> list[dict]:
    """Copies of ``items`` with their datalist position under :data:`CASE_INDEX_KEY`."""
    return [{**item, CASE_INDEX_KEY: i} for i, item in enumerate(items)]


class ShardSampler(Sampler[int]):
    """Deterministic, unpadded split of a dataset over ranks: rank r gets r, r + W, r + 2W, ...

    Unlike ``DistributedSampler`` it adds no duplicate cases to even out the ranks, so
    validation metrics gathered from all ranks count every case exactly once. Ranks may
    get one case more or less than each other.
    """

    def __init__(self, dataset_len: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, dataset_len, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_train_dataset(
    items: Sequence[dict],
    transform: Callable,
    cache_num: int,
    cache_rate: float,
    workers: int,
    progress: bool,
) -> CacheDataset:
    """Cache the deterministic prefix of ``transform`` for the first cases.

    ``min(cache_num, cache_rate * len(items))`` cases are cached once (the original's
    ``--cache_num``); the rest go through the whole pipeline on every draw. Random steps,
    tumor synthesis first, run after the cache on every draw (see ``labelfree.data.transforms``).
    """
    return CacheDataset(
        data=list(items),
        transform=transform,
        cache_num=cache_num,
        cache_rate=cache_rate,
        num_workers=max(1, workers),
        progress=progress,
        # Every draw gets its own copy of the cached sample: the tumor synthesis after the
        # cache paints in place (see labelfree.data.transforms), which must never reach the cache.
        copy_cache=True,
    )


def build_train_loader(dataset, batch_size: int, workers: int, ctx: DistContext, seed: int = 0,
                       samples_on_device: bool = False) -> DataLoader:
    """Shuffling loader; under DDP a ``DistributedSampler`` gives each rank other cases.

    Call :func:`prepare_epoch` before iterating each epoch: it reshuffles and reseeds.
    ``samples_on_device``: the pipeline already puts samples on the GPU (synthesis on the
    GPU), so they are not pinned (only host memory can be).
    """
    sampler = (
        DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
        if ctx.distributed
        else None
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda" and not samples_on_device,
        generator=torch.Generator(),
        worker_init_fn=worker_init_fn,  # MONAI's seeding, then Ctrl-C / SIGTERM left to the main process
    )


def build_val_loader(items: Sequence[dict], transform: Callable, workers: int, ctx: DistContext) -> DataLoader:
    """One whole case per batch; under DDP each rank validates its own unpadded shard."""
    dataset = Dataset(data=list(items), transform=transform)
    sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size) if ctx.distributed else None
    return DataLoader(
        dataset,
        batch_size=1,
        shuffle=False,
        sampler=sampler,
        num_workers=min(workers, max(1, math.ceil(len(dataset) / ctx.world_size))),
        pin_memory=ctx.device.type == "cuda",
        worker_init_fn=worker_init_fn,
    )


def epoch_seed(seed: int, rank: int, epoch: int) -> int:
    """A 63-bit seed that depends on (seed, rank, epoch) only."""
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


def prepare_epoch(loader: DataLoader, epoch: int, seed: int, rank: int) -> None:
    """Reshuffle and reseed the training loader for ``epoch``.

    The order of cases and every random transform (tumor synthesis, crops, flips, ...)
    then depend only on (seed, rank, epoch), not on what ran before: a run resumed at
    epoch ``e`` draws the same samples as an uninterrupted one, and ranks draw differently.
    """
    s = epoch_seed(seed, rank, epoch)
    loader.generator.manual_seed(s)  # sampler shuffle and the worker base seed
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    if loader.num_workers == 0:
        # Workers get their transform seeds from the generator (MONAI's worker_init_fn);
        # in-process loading needs the transforms reseeded here.
        set_rnd(loader.dataset, s % (2**32))
