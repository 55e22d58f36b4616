"""Lean memory: candidate activations recomputed in backward instead of kept from forward.

A supernet keeps, for backward, the intermediate activations of every candidate op on
every edge of every cell: at the seed configuration (8 cells, 16 channels, batch 64,
28x28) that is most of a first-order step's 10 GB peak (issue 16). In lean mode that
work runs under non-reentrant ``torch.utils.checkpoint``: forward keeps only its inputs
(a cell state and the architecture weights), backward runs it once more to rebuild its
graph. The unit is the finest one that holds a weighted sum, so that the sum's backward
reads recomputed candidate outputs: an edge (a MixedOp) of the per-edge cell; the whole
cell when edges are batched, since a batched state's fan-out feeds every node. Measured
at the seed configuration, per-edge cells, 2 threads, CPU: a step's peak of live tensor
bytes 7883 -> 1366 MiB (0.17x), peak RSS 10.1 -> 4.8 GB (0.47x: glibc keeps the freed
activation blocks), step time 1.41x (a second forward of every candidate); at CIFAR-10
shapes batched cells keep 0.28x (one whole cell is alive in its backward)
(benchmarks/results/2026-11-30-cpu-lean-memory, -cpu-search-capacity).

The recomputation must be the same function as the forward it replaces, and must not
do twice what forward did once:

* BatchNorm running statistics: the recomputation runs under :func:`running_stats_held`
  (the forward's tracking, momentum 0), so it normalises by the same batch statistics
  and its update leaves the running ones as they are (``r·1 + batch·0``). Turning tracking off instead
  (:func:`running_stats_frozen`) would change which tensors batch_norm saves for backward,
  and checkpoint refuses a recomputation that saves other tensors than the forward did;
* random draws: the supernet draws none inside a cell (augmentation happens before the
  network, drop path is train-only), and checkpoint's ``preserve_rng_state`` replays the
  RNG anyway, except while a CUDA graph is being captured, where reading the generator
  state is not allowed (and, with no draws, not needed).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

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
    """A context manager for the recomputation of what ``model`` runs now: its BatchNorms
    track (or not, inside :func:`running_stats_frozen`) as they do at this call, with
    momentum 0, which keeps the running statistics exactly (``r·1 + batch·0`` for finite
    batch statistics) while running the same ops, and saving the same tensors, as forward."""
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

    return replay()


def recomputed(module: nn.Module, *inputs):
    """``module(*inputs)``, keeping only ``inputs`` for backward (see the module docstring)."""
    capturing = inputs[0].is_cuda and torch.cuda.is_current_stream_capturing()
    return checkpoint(module, *inputs, use_reentrant=False, preserve_rng_state=not capturing,
                      context_fn=lambda: (contextlib.nullcontext(), running_stats_held(module)))
