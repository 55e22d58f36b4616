"""Deterministic counts of a search step: dispatched aten ops and host syncs.

At search shapes (28–32 px, 16 channels) every kernel is tiny, so a GPU search step is
bound by launches and Python dispatch, not by bytes or FLOPs. The aten ops that reach the
backends (counted below autograd by a ``TorchDispatchMode``) are the CPU-countable proxy
for launches, and unlike a time they are exact: the same code gives the same count on any
machine, under any load. That makes them a CI budget (``benchmarks/budgets.json``).

The count does not depend on the batch or image size, only on the network's structure
and the code, so the seed configuration is counted at a small batch to stay quick.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from dartsfast.data import make_synthetic
from dartsfast.search import distributed
from dartsfast.search.config import SearchConfig
from dartsfast.search.loop import SearchRun
from dartsfast.search.space import DEFAULT_OPS

# aten::_local_scalar_dense is what .item(), bool(tensor), float(tensor) dispatch: the host
# waits for the device there.
SYNC_OPS = ("aten._local_scalar_dense",)

# The seed experiment's network (the Fashion-MNIST search): 8 cells, 16 channels, 28×28×1,
# dsconv/mbconv/fused_mbconv/none. "tiny" is a 3-cell supernet for quick runs. Both count
# the batched supernet, which is what a GPU (where launches are the cost) runs by default.
CONFIGS = {
    "seed": dict(layers=8, channels=16, batch_size=64, image_size=28, ops=DEFAULT_OPS, edge_batching=True),
    "tiny": dict(layers=3, channels=4, batch_size=16, image_size=8,
                 ops=("skip_connect", "avg_pool_3x3", "dsconv_3x3", "none"), edge_batching=True),
}


class OpCounter(TorchDispatchMode):
    """Counts every aten op that reaches the backends (after autograd), by name."""

    def __init__(self):
        super().__init__()
        self.by_op: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.by_op[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))

    @property
    def ops(self) -> int:
        return sum(self.by_op.values())

    @property
    def syncs(self) -> int:
        return sum(self.by_op[name] for name in SYNC_OPS)


@dataclass(frozen=True)
class StepCounts:
    aten_ops: int
    host_syncs: int
    by_op: dict
    # aten ops of each cell's forward in the step's passes (normal and reduce cells differ)
    per_cell_forward: tuple = ()
    # CUDA only (torch profiler): kernels, memcpys and memsets the device ran in the step
    kernel_launches: int | None = None


# Settings a count may override besides the configuration's (``dartsfast bench ops``).
OVERRIDES = ("layers", "channels", "image_size", "in_channels", "ops", "partial_channels", "edge_batching",
             "cuda_graph", "memory")


def make_run(name: str, order: int = 1, amp: str = "off", device: torch.device | str = "cpu",
             batch_size: int | None = None, **overrides) -> SearchRun:
    """A :class:`SearchRun` of configuration ``name`` on synthetic data (``batch_size``
    overrides the configuration's, e.g. to count the seed network cheaply; ``overrides``:
    any of :data:`OVERRIDES`)."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise ValueError(f"unknown override(s) {', '.join(unknown)}; allowed: {', '.join(OVERRIDES)}")
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; available: {', '.join(CONFIGS)}")
    c = {**CONFIGS[name], **{k: v for k, v in overrides.items() if v is not None}}
    batch = batch_size or c["batch_size"]
    # Two halves of three batches each: the two counted steps never reach the end of a half
    # (where a new shuffle adds a per-epoch randperm); ≥ 2 samples per class.
    samples = max(6 * batch, 20)
    data = make_synthetic(samples, num_classes=10, in_channels=c.get("in_channels", 1),
                          image_size=c["image_size"], seed=0)
    extra = {k: c[k] for k in ("partial_channels", "edge_batching", "cuda_graph", "memory") if k in c}
    config = SearchConfig(dataset="synthetic", epochs=1, batch_size=batch, layers=c["layers"],
                          channels=c["channels"], ops=c["ops"], order=order, amp=amp,
                          device=str(device), progress=False, plots=False, **extra)
    return SearchRun(config, torch.device(device), distributed.DistContext(), data)


def count_step(run: SearchRun, launches: bool = False) -> StepCounts:
    """Counts of one ``run.step`` after a warm-up step (optimiser state exists, as in a search).

    ``launches`` (CUDA): also count the device's kernels in one more step with the torch profiler.
    """
    sums = [torch.zeros((), device=run.device) for _ in range(3)]
    run.step(*sums)
    counter = OpCounter()
    cells = run.model.net.cells
    per_cell = [0] * len(cells)
    marks = {}

    def before(i):
        return lambda module, args: marks.__setitem__(i, counter.ops)

    def after(i):
        return lambda module, args, out: per_cell.__setitem__(i, per_cell[i] + counter.ops - marks[i])

    hooks = [h for i, cell in enumerate(cells)
             for h in (cell.register_forward_pre_hook(before(i)), cell.register_forward_hook(after(i)))]
    try:
        with counter:
            run.step(*sums)
    finally:
        for h in hooks:
            h.remove()
    kernels = _count_kernels(run, sums) if launches and run.device.type == "cuda" else None
    return StepCounts(counter.ops, counter.syncs, dict(counter.by_op.most_common()), tuple(per_cell), kernels)


def _count_kernels(run: SearchRun, sums) -> int:
    from torch.profiler import ProfilerActivity, profile  # lazy: only CUDA counts need the profiler

    torch.cuda.synchronize(run.device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run.step(*sums)
        torch.cuda.synchronize(run.device)
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)
