"""Process-group set-up for single-process, torchrun and the original's spawn launch.

Three ways to start training, all with the same ``main_worker(local_rank, ...)``:

* plain ``python main.py ...``: one process, no process group;
* ``torchrun --nproc_per_node=N [--nnodes=M ...] main.py ...``: torchrun sets RANK,
  WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/PORT); we read them (``env://``);
* ``python main.py --distributed --dist-url=tcp://host:port`` (the original's way): one
  process per visible GPU via ``torch.multiprocessing.spawn``; ``--world_size`` is the number
  of nodes and ``--rank`` this node's index. Without a GPU, one gloo process per node.

The backend is NCCL on CUDA (``--dist-backend``) and always gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """Only the main process (global rank 0) prints, writes events and saves."""
        return self.rank == 0


@dataclass(frozen=True)
class LaunchPlan:
    """How :func:`launch` starts the workers."""

    mode: str  # "single", "torchrun" or "spawn"
    procs_per_node: int = 1
    world_size: int = 1
    node_rank: int = 0
    init_method: str = "env://"


def under_torchrun() -> bool:
    """True when the torchrun environment variables are set."""
    return all(v in os.environ for v in TORCHRUN_VARS)


def env_rank() -> int:
    """Global rank from the environment (0 outside torchrun), usable before any set-up."""
    return int(os.environ.get("RANK", "0"))


def resolve_device(name: str | None) -> torch.device:
    """The one device selection of every entry point: ``auto`` / ``None``, ``cpu``, ``cuda``, ``cuda:N``.

    ``auto`` picks CUDA when a GPU is visible, else the CPU.

    Raises:
        ValueError: an unknown name, or CUDA (or GPU N) asked for but not visible.
    """
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name}: no CUDA GPU is visible to PyTorch; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def plan_launch(distributed: bool, device_type: str, nodes: int, node_rank: int, dist_url: str) -> LaunchPlan:
    """Decide how to start: torchrun wins, then ``--distributed`` spawn, else one process.

    Args:
        distributed: ``--distributed``.
        device_type: ``"cuda"`` or ``"cpu"``.
        nodes: ``--world_size`` (number of nodes in the spawn launch, as the original).
        node_rank: ``--rank`` (this node's index in the spawn launch).
        dist_url: ``--dist-url``, the rendezvous address of the spawn launch.
    """
    if under_torchrun():
        return LaunchPlan("torchrun", world_size=int(os.environ["WORLD_SIZE"]))
    if not distributed:
        return LaunchPlan("single")
    procs = torch.cuda.device_count() if device_type == "cuda" else 1
    return LaunchPlan(
        "spawn", procs_per_node=procs, world_size=procs * nodes, node_rank=node_rank, init_method=dist_url
    )


def launch(worker: Callable[..., Any], plan: LaunchPlan, *worker_args: Any) -> None:
    """Run ``worker(local_rank, plan, *worker_args)`` in every process of ``plan``."""
    if plan.mode == "spawn" and plan.procs_per_node > 1:
        torch.multiprocessing.spawn(worker, args=(plan, *worker_args), nprocs=plan.procs_per_node, join=True)
    elif plan.mode == "torchrun":
        worker(int(os.environ["LOCAL_RANK"]), plan, *worker_args)
    else:
        worker(0, plan, *worker_args)


def init_distributed(plan: LaunchPlan, local_rank: int, device: torch.device, backend: str) -> DistContext:
    """Join the process group of ``plan`` (if any) and pick this process's device.

    Args:
        plan: from :func:`plan_launch`.
        local_rank: process index on this node (GPU index on CUDA).
        device: ``cpu``, ``cuda``, or ``cuda:N`` (honoured by a single process; a distributed
            process takes the GPU of its local rank).
        backend: ``--dist-backend``; used on CUDA, replaced by gloo on CPU (NCCL needs GPUs).
    """
    if device.type == "cuda":
        index = device.index if plan.mode == "single" and device.index is not None else local_rank
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
        # Fixed patch sizes: let cuDNN pick the fastest convolution algorithms once.
        torch.backends.cudnn.benchmark = True
    if plan.mode == "single":
        return DistContext(device=device)
    backend = backend if device.type == "cuda" else "gloo"
    if plan.mode == "torchrun":
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    else:
        rank, world_size = plan.node_rank * plan.procs_per_node + local_rank, plan.world_size
    dist.init_process_group(backend=backend, init_method=plan.init_method, world_size=world_size, rank=rank)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, distributed=True)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_gather_objects(obj: Any, ctx: DistContext) -> list:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` without a process group."""
    if not ctx.distributed:
        return [obj]
    gathered: list = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Sum a few floats over all ranks."""
    if not ctx.distributed:
        return list(values)
    # gloo reduces CPU tensors; NCCL needs them on this rank's GPU.
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def print0(ctx: DistContext | None, *args: Any, **kwargs: Any) -> None:
    """``print`` on the main process only (flushes, so logs interleave in order)."""
    rank = ctx.rank if ctx is not None else env_rank()
    if rank == 0:
        print(*args, **kwargs, flush=True)
