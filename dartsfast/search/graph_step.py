"""The search step captured in one CUDA graph and replayed (issue 14).

At search shapes a step is thousands of tiny kernels, and on a GPU the host's time to
launch them is the step's time. A CUDA graph records the whole step once — architecture
step, weight step, gradient clipping and both optimiser updates — and replays it with one
launch; each replay costs the device's time only.

What capture needs, and where the search provides it:

- no host syncs in the step (the step reads nothing back: ``tests/bench/test_op_budget.py``),
  and the same kernels with the same shapes on every call (no data-dependent shapes: the
  CPU test ``test_graph_step.py`` compares the op sequences of two steps on different data);
- inputs at fixed addresses: each call copies its batch into static buffers;
- optimisers that keep their state on the device: fused SGD with the learning rate as a
  device tensor (the scheduler writes it in place, so a new epoch's rate needs no
  re-capture) and fused Adam with ``capturable=True``;
- everything lazily created (optimiser state, Triton JIT and autotuning, cuDNN algorithm
  choice) done before capture: the first ``warmup`` calls run eagerly on a side stream.

Not captured (the search says why in one line and runs eagerly): CPU devices, fp16
(GradScaler reads its inf flag on the host), DDP (its gradient all-reduce hooks) and
``compile`` (the compiler has its own graph mode).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

WARMUP_CALLS = 3  # eager calls before capture: optimiser state exists after 1, autotuning may take 2


def graph_unavailable_reason(device: torch.device, amp: str, distributed: bool, compiled: bool) -> str:
    """Why the step cannot be captured on this run ('' when it can)."""
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device (the search runs on {device})"
    if amp == "fp16":
        return "fp16 AMP: GradScaler reads its inf/NaN flag on the host every step"
    if distributed:
        return "DDP: its gradient all-reduce hooks are not captured"
    if compiled:
        return "the supernet is torch.compile'd (its own CUDA graphs: mode='reduce-overhead')"
    return ""


class GraphedStep:
    """``compute(*batch) -> tuple of tensors``, captured in a CUDA graph on the call after
    ``warmup`` eager calls, then replayed with each new batch copied into place.

    The returned tensors are the graph's static outputs: the next call overwrites them,
    so read or accumulate them before calling again.
    """

    def __init__(self, compute: Callable[..., tuple], warmup: int = WARMUP_CALLS) -> None:
        self.compute, self.warmup = compute, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_inputs: list[torch.Tensor] = []
        self.static_outputs: tuple = ()

    def __call__(self, *batch: torch.Tensor) -> tuple:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return self._eager_on_side_stream(batch)
        if self.graph is None:
            self._capture(batch)
        else:
            for static, new in zip(self.static_inputs, batch):
                static.copy_(new)
        self.graph.replay()  # capture only records: the capturing call runs here too
        return self.static_outputs

    def _eager_on_side_stream(self, batch: Sequence[torch.Tensor]) -> tuple:
        # The warm-up runs on a side stream, as torch.cuda.graphs' documentation does for
        # whole-network capture, so its lazily created state is not tied to the default stream.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            out = self.compute(*batch)
        torch.cuda.current_stream().wait_stream(side)
        return out

    def _capture(self, batch: Sequence[torch.Tensor]) -> None:
        self.static_inputs = [b.clone() for b in batch]
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.static_outputs = self.compute(*self.static_inputs)
        self.graph = graph
