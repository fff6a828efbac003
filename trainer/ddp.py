"""DistributedDataParallel plumbing: joining and leaving the process group, and what ranks agree on.

Every helper is a no-op for a single process (``world == 1``), so the loop
calls them unconditionally. Rank 0 validates and writes files; the others get
its decisions (a score, a resumed state, a stop request) through these.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch


def setup_distributed(dev: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world, device, created) from torchrun's environment; joins the process group if needed."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return 0, 1, dev, False
    import torch.distributed as dist

    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        # rank 0 validates alone while the others wait: allow a long validation on a big split
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(hours=2))
    return rank, world, dev, created


def broadcast_float(value: float | None, dev: torch.device) -> float:
    """Rank 0's value on every rank (so schedules and early stopping agree). NCCL needs a device tensor."""
    import torch.distributed as dist

    box = torch.tensor([value if value is not None else 0.0], dtype=torch.float64, device=dev)
    dist.broadcast(box, src=0)
    return float(box.item())


def broadcast_object(value, world: int):
    """Rank 0's (picklable) ``value`` on every rank; ``value`` itself for a single process."""
    if world <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool, world: int, dev: torch.device) -> bool:
    """True on every rank when it is True on any (a stop request must stop all ranks at the same step)."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    box = torch.tensor([1.0 if flag else 0.0], device=dev)
    dist.all_reduce(box, op=dist.ReduceOp.MAX)
    return bool(box.item() > 0)


def sum_ranks(values: list[float], world: int, dev: torch.device) -> list[float]:
    """Element-wise sum over ranks (the logged train loss is every rank's, not rank 0's alone)."""
    if world <= 1:
        return values
    import torch.distributed as dist

    box = torch.tensor(values, dtype=torch.float64, device=dev)
    dist.all_reduce(box)
    return box.tolist()


def wrap(model: torch.nn.Module, world: int, dev: torch.device) -> torch.nn.Module:
    """What trains: ``model`` itself, or its DistributedDataParallel wrapper under torchrun."""
    if world <= 1:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)


def leave_group(*, wait_for_others: bool) -> None:
    """Leave the process group this process created, on every way out of training.

    DDP's reducer holds the process group: the caller drops the wrapper (and its
    reference cycles) first, so the group is torn down here on every rank, not by
    the garbage collector while the interpreter exits (where gloo's threads could
    be destroyed still running: SIGABRT). When every rank leaves together
    (finished, interrupted, diverged) each waits for the others first; after a
    failure on one rank alone there is no one to wait for, and leaving makes the
    others fail rather than wait forever.
    """
    import gc

    import torch.distributed as dist

    gc.collect()
    if wait_for_others:
        dist.barrier()
    dist.destroy_process_group()
