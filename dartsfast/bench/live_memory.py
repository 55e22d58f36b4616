"""Peak live tensor bytes of a piece of work: what it allocates, not what the allocator keeps.

On a GPU, ``torch.cuda.max_memory_allocated`` is the number that decides whether a batch
fits (the caching allocator's reserve comes on top and is reusable). A CPU has no such
counter, and its resident set measures glibc as much as the work: a lean-memory search step
at the seed configuration holds at most 0.35 GiB of tensors above its starting level, yet
its RSS climbs by ~2.5 GiB, because freed activation blocks stay in the heap (issue 16;
benchmarks/results/2026-11-30-cpu-lean-memory). So on a CPU the torch profiler's memory
events (every allocation and free of torch's CPU allocator, with its size) are replayed in
time order, and their running sum's maximum is the peak.

Both counts start at the level when the measurement begins: tensors alive before (weights,
data, optimiser state) are not included. On a CPU, a block allocated before and freed
during the work is not subtracted (torch warns "Memory block of unknown size was
allocated before the profiling started"): gradients that a step sets to None and
allocates again count once, as new.
"""
from __future__ import annotations

from typing import Callable

import torch

_MEMORY_EVENT = "[memory]"  # the profiler's name for an allocation (+bytes) or free (-bytes)


def allocation_stats(work: Callable[[], object]) -> tuple[int, int]:
    """CPU: (peak live bytes, total bytes allocated) of one ``work()`` call, from the
    profiler's memory events as :func:`peak_live_bytes`. Both are exact for a given
    configuration: the same code allocates the same tensors in the same order."""
    records = _memory_events(work)
    live = peak = total = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
        total += max(nbytes, 0)
    return peak, total


def _memory_events(work: Callable[[], object]) -> list[tuple[int, int]]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        work()
    # The events' own list, not prof.events(): the FunctionEvent view drops memory records.
    return sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                  if e.name() == _MEMORY_EVENT)


def peak_live_bytes(work: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Run ``work()`` once; return the most bytes of tensors it held alive at one time,
    counted from the level at the call (0 if it frees more than it allocates)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        work()
        torch.cuda.synchronize(device)
        return max(0, torch.cuda.max_memory_allocated(device) - start)
    if device.type != "cpu":
        raise ValueError(f"peak_live_bytes measures CPU or CUDA work, not {device.type}")
    return allocation_stats(work)[0]
