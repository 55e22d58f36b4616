"""Multi-process search: ``torchrun`` environment → process group, and the collectives the loop needs.

One process per GPU (or per CPU process with gloo). Weights are synchronised by
``DistributedDataParallel``; the alphas are not DDP parameters (they are owned apart
from the network, and their hypergradient comes from ``torch.autograd.grad``, which
DDP's reducer does not see), so their gradients are all-reduced explicitly — otherwise
ranks would drift apart and derive different genotypes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module created the process group (so it destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistContext:
    """Join the process group ``torchrun`` describes (WORLD_SIZE > 1), else a 1-process context.

    Uses nccl for CUDA, gloo for CPU. A group the caller already initialised is reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun")
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_(tensors: Sequence[torch.Tensor], ctx: DistContext) -> None:
    """In place: every tensor becomes the mean over ranks (one flat all-reduce, no host sync)."""
    if not ctx.enabled or not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset:offset + n].view_as(t))
        offset += n


def all_reduce_sum_(tensors: Sequence[torch.Tensor], ctx: DistContext) -> None:
    """In place sum over ranks (epoch metrics)."""
    if ctx.enabled:
        for t in tensors:
            dist.all_reduce(t)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
