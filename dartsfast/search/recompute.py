"""Lean memory: candidate activations recomputed in backward instead of kept from forward.

A supernet keeps, for backward, the intermediate activations of every candidate op on
every edge of every cell: at the seed configuration (8 cells, 16 channels, batch 64,
28x28) that is most of a first-order step's 10 GB peak (issue 16). In lean mode that
work runs inside :class:`_Recompute`: forward runs it without a graph and keeps only its
inputs (a cell state and the architecture weights), backward runs it once more with a
graph and differentiates that. The unit is the finest one that holds a weighted sum, so
that the sum's backward reads recomputed candidate outputs: an edge (a MixedOp) of the
per-edge cell; the whole cell when edges are batched, since a batched state's fan-out
feeds every node. Measured at the seed configuration, per-edge cells, 2 threads, CPU: a
step's peak of live tensor bytes 7883 -> 410 MiB (0.05x), peak RSS 10.1 -> 3.1-3.2 GB
(glibc keeps freed blocks), step time 1.16x median, 1.29x fastest (a second forward of
every candidate; the architecture pass's recomputation skips what the alphas do not need,
:func:`alphas_only_backward`: 1.38x before); at
CIFAR-10 shapes batched cells keep 0.23x per image (one whole cell is alive in its
backward) (benchmarks/results/2026-12-01-cpu-lean-memory, -lean-alphas-only, -search-capacity).

Why a Function of our own rather than ``torch.utils.checkpoint``: checkpoint's
non-reentrant hooks detach every tensor they save, 19,880 of the 46,278 aten ops of a
lean seed step (1.44x fast's op count with the Function instead of 2.43x; a search step on
a GPU is bound by dispatch); and its live peak was 1366 MiB against the Function's 410
(measured; which of checkpoint's holds makes the difference was not traced: the Function's
``autograd.grad`` frees an edge's recomputed graph as soon as it has run). The Function
hands back one gradient per input, summed over its uses inside; fast mode sums in the same
order (MixedOp and the Supernet take a view of a state before its uses), so lean and fast
steps agree bit for bit in float64.
Double backward is not supported (nothing in the search differentiates a gradient).

The recomputation must be the same function as the forward it replaces, and must not
do twice what forward did once:

* BatchNorm running statistics: the recomputation runs under :func:`running_stats_held`
  (the forward's tracking, momentum 0), so it normalises by the same batch statistics
  and its update leaves the running ones as they are (``r·1 + batch·0``). Turning tracking
  off instead (:func:`running_stats_frozen`) would change which tensors batch_norm uses;
* autocast: backward runs outside the forward's autocast region, so the Function records
  the autocast state of its forward and restores it for the recomputation;
* random draws: the supernet draws none inside a cell (augmentation happens before the
  network, drop path is train-only), so no RNG state is kept or replayed (reading the
  generator state is not allowed while a CUDA graph is captured anyway).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.autograd.function import once_differentiable

MEMORY_MODES = ("fast", "lean")


@contextlib.contextmanager
def running_stats_frozen(model: nn.Module) -> Iterator[None]:
    """BatchNorms still normalise by the batch but leave their running statistics alone.

    For the second order's passes at weights the network never takes (w' and w ± ε·v):
    their batch statistics describe no network the search trains. (The original code ran
    w' on a throw-away copy, so its statistics were lost anyway.) It also skips 4 ops per
    fused MBConv middle per pass, whose running-stat update is not inside a kernel.
    Nested use is safe: an inner block finds the statistics already frozen and leaves them
    to the outer one.
    """
    norms = [m for m in _norms(model) if m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def _norms(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def running_stats_held(model: nn.Module):
    """Context managers (a fresh one per backward, should a graph be run twice) for the
    recomputation of what ``model`` runs now: its BatchNorms track (or not, inside
    :func:`running_stats_frozen`) as they do at this call, with momentum 0, which keeps the
    running statistics exactly (``r·1 + batch·0`` for finite batch statistics) while
    running the same ops as forward."""
    norms = _norms(model)
    tracking = [m.track_running_stats for m in norms]

    @contextlib.contextmanager
    def replay() -> Iterator[None]:
        before = [(m.track_running_stats, m.momentum) for m in norms]
        for m, track in zip(norms, tracking):
            m.track_running_stats = track
            if m.momentum is not None:
                m.momentum = 0.0
        try:
            yield
        finally:
            for m, (track, momentum) in zip(norms, before):
                m.track_running_stats, m.momentum = track, momentum

    return replay


# > 0 inside :func:`alphas_only_backward`. A plain module global, not thread-local: the
# autograd engine runs CUDA backward on its own device threads.
_ALPHAS_ONLY = 0
# Whether the engine will run a (non-leaf) node in the current backward; private, so only
# where this torch has it (2.x does). Without it the recomputation does all its work.
_will_execute = getattr(torch._C, "_will_engine_execute_node", None)


@contextlib.contextmanager
def alphas_only_backward() -> Iterator[None]:
    """Backward passes started inside differentiate only leaf tensors that are no parameter of
    a recomputed module (an architecture step: the alphas), so the recomputation computes
    only what reaches them, as fast mode's engine does: no parameter gradients (a
    convolution's weight gradient costs about what its forward does) and no input gradient
    the engine will not use (the stem's output, whose parameters are not asked for). A
    custom backward cannot learn this itself: ``needs_input_grad`` is fixed at forward, and
    the engine says whether it runs a node but not whether a non-leaf is a requested input."""
    global _ALPHAS_ONLY
    _ALPHAS_ONLY += 1
    try:
        yield
    finally:
        _ALPHAS_ONLY -= 1


def _wanted(ctx) -> list[bool]:
    """Per input of :class:`_Recompute` (after module and count): whether backward computes its gradient."""
    needs = list(ctx.needs_input_grad[2:])
    if not _ALPHAS_ONLY:
        return needs
    inputs = len(needs) - len(ctx.params)
    needs[inputs:] = [False] * len(ctx.params)
    if _will_execute is not None:
        for i, t in enumerate(ctx.saved_tensors):
            if needs[i] and t is not None and t.grad_fn is not None:
                needs[i] = _will_execute(t.grad_fn)
    return needs


def _autocast_state() -> list[tuple[str, bool, torch.dtype]]:
    return [(d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in ("cuda", "cpu")]


class _Recompute(torch.autograd.Function):
    """Forward without a graph; backward runs ``module`` again on the kept inputs and
    differentiates that. The module's parameters are inputs of this node, so their
    gradients reach their AccumulateGrad (and DDP's hooks) as without recomputation."""

    @staticmethod
    def forward(ctx, module: nn.Module, num_inputs: int, *tensors):
        inputs = tensors[:num_inputs]
        ctx.module, ctx.params = module, tensors[num_inputs:]
        ctx.autocast = _autocast_state()
        ctx.replay = running_stats_held(module)  # the BatchNorms' tracking as of this forward
        ctx.save_for_backward(*inputs)
        return module(*inputs)

    @staticmethod
    @once_differentiable  # a gradient of this gradient would silently miss the recomputation
    def backward(ctx, grad_out):
        needs = _wanted(ctx)
        inputs = [t if t is None else t.detach().requires_grad_(need)
                  for t, need in zip(ctx.saved_tensors, needs)]
        with contextlib.ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            for device, enabled, dtype in ctx.autocast:
                stack.enter_context(torch.autocast(device, dtype=dtype, enabled=enabled))
            stack.enter_context(ctx.replay())
            out = ctx.module(*inputs)
        leaves = list(inputs) + list(ctx.params)
        wanted = [i for i, (t, need) in enumerate(zip(leaves, needs)) if need and t is not None]
        grads = torch.autograd.grad(out, [leaves[i] for i in wanted], grad_out, allow_unused=True)
        result = [None] * (2 + len(leaves))
        for i, g in zip(wanted, grads):
            result[2 + i] = g
        return tuple(result)


def recomputed(module: nn.Module, *inputs):
    """``module(*inputs)``, keeping only ``inputs`` for backward (see the module docstring).

    ``inputs``: tensors or None; ``module`` returns one tensor."""
    params = [p for p in module.parameters() if p.requires_grad]
    return _Recompute.apply(module, len(inputs), *inputs, *params)
