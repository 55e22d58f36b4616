"""The DARTS supernet (stem, cells, classifier) and its architecture parameters, apart.

The network never owns its architecture parameters: ``Supernet.forward`` takes the
softmaxed weights, so weight and alpha optimisers see disjoint parameter sets (and
DDP can wrap the network while the alphas are all-reduced on their own).
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["ArchParams", "BatchedCell", "Cell", "MixedOp", "SearchModel", "Supernet"]

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast.search.batched_cell import BatchedCell
from dartsfast.search.cell import Cell, MixedOp
from dartsfast.search.layout import build_cells
from dartsfast.search.recompute import MEMORY_MODES, recomputed
from dartsfast.search.space import MULTIPLIER, STEPS, check_op_names, derive_genotype, num_edges


class Supernet(nn.Module):
    """Stem → ``layers`` cells (reduction at 1/3 and 2/3 depth, channels doubled; the layout of
    :mod:`dartsfast.search.layout`) → classifier.

    ``forward(x, weights_normal, weights_reduce)`` with softmaxed alphas of shape
    [num_edges, num_ops]; x: [N, in_channels, H, W] → logits [N, num_classes].

    ``edge_batching`` (default): cells are :class:`BatchedCell` (the edges leaving a state
    computed together, 5 evaluations per cell instead of 14); False keeps the per-edge
    :class:`Cell`. Both compute the same function from the same seed, but their
    state_dicts differ (a batched state holds its edges' weights concatenated).

    ``memory``: 'fast' keeps every activation for backward; 'lean' keeps only each cell's
    inputs and recomputes the cell in backward (:mod:`dartsfast.search.recompute`): the
    same function and gradients, 0.17-0.28x the live activation bytes, ~1.4x the step time.
    """

    def __init__(self, channels: int, num_classes: int, layers: int, op_names: Sequence[str],
                 in_channels: int = 3, steps: int = STEPS, multiplier: int = MULTIPLIER,
                 stem_multiplier: int = 3, partial_channels: int = 1, edge_batching: bool = True,
                 memory: str = "fast") -> None:
        super().__init__()
        for name, value in (("channels", channels), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("partial_channels", partial_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if layers < 3:
            raise ValueError(f"layers must be at least 3 (two reduction cells at 1/3 and 2/3 depth), got {layers}")
        self.op_names = check_op_names(op_names)
        self.steps, self.multiplier = steps, multiplier
        self.edge_batching = bool(edge_batching)
        # The batched cell takes over a per-edge cell's modules, so both draw the same
        # initial weights from a seed.
        wrap = BatchedCell if self.edge_batching else (lambda cell: cell)
        stack = build_cells(in_channels, channels, layers, stem_multiplier, lambda c_pp, c_p, c, red, red_prev: wrap(
            Cell(steps, multiplier, c_pp, c_p, c, red, red_prev, self.op_names, partial_channels)))
        self.stem, self.cells = stack.stem, stack.cells
        self.classifier = nn.Linear(stack.out_channels[-1], num_classes)
        self.memory = memory
        # BatchNorm only reads its batch counter when momentum is None (a cumulative
        # average); the search's BNs all have a momentum, so the counter is dropped: one
        # add_ less per BN per forward (≈ 600 dispatched ops per seed-configuration step).
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None:
                m.num_batches_tracked = None

    @property
    def memory(self) -> str:
        return self._memory

    @memory.setter
    def memory(self, mode: str) -> None:
        """'lean': per-edge cells recompute each edge (the finest unit holding a weighted sum);
        batched cells, whose node sums mix every state's fan-out, recompute whole cells."""
        if mode not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {', '.join(MEMORY_MODES)}, got {mode!r}")
        self._memory = mode
        for cell in self.cells:
            if isinstance(cell, Cell):
                cell.recompute_edges = mode == "lean"

    def forward(self, x: torch.Tensor, weights_normal: torch.Tensor, weights_reduce: torch.Tensor,
                edges_normal: torch.Tensor | None = None, edges_reduce: torch.Tensor | None = None) -> torch.Tensor:
        s1 = self.stem(x)
        # The first cell takes the stem twice. A recomputed cell hands back one gradient per
        # input, so s0 is a view of its own: the two reach the stem in the same order in
        # fast and lean mode (which then agree bit for bit).
        s0 = s1.view_as(s1)
        # Batched cells in lean mode are recomputed whole (per-edge cells do it edge by edge).
        whole = self.memory == "lean" and self.edge_batching and torch.is_grad_enabled()
        for cell in self.cells:
            w, e = (weights_reduce, edges_reduce) if cell.reduction else (weights_normal, edges_normal)
            s0, s1 = s1, recomputed(cell, s0, s1, w, e) if whole else cell(s0, s1, w, e)
        # The classifier in its own dtype: fp32 under AMP (the logits feed a loss), fp64 in tests.
        return self.classifier(s1.mean((2, 3)).to(self.classifier.weight.dtype))


class ArchParams(nn.Module):
    """The architecture parameters: alphas (and PC-DARTS edge betas) for normal and reduce cells."""

    def __init__(self, num_ops: int, steps: int = STEPS, edge_normalization: bool = False,
                 init_scale: float = 1e-3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.steps = steps
        e = num_edges(steps)
        self.alphas_normal = nn.Parameter(init_scale * torch.randn(e, num_ops, generator=generator))
        self.alphas_reduce = nn.Parameter(init_scale * torch.randn(e, num_ops, generator=generator))
        self.edge_normalization = edge_normalization
        if edge_normalization:
            self.betas_normal = nn.Parameter(init_scale * torch.randn(e, generator=generator))
            self.betas_reduce = nn.Parameter(init_scale * torch.randn(e, generator=generator))

    def _edge_softmax(self, betas: torch.Tensor) -> torch.Tensor:
        parts, start = [], 0
        for i in range(self.steps):
            parts.append(F.softmax(betas[start:start + 2 + i], dim=-1))
            start += 2 + i
        return torch.cat(parts)

    def forward(self) -> tuple[torch.Tensor, ...]:
        """(weights_normal, weights_reduce, edges_normal | None, edges_reduce | None)."""
        wn, wr = F.softmax(self.alphas_normal, dim=-1), F.softmax(self.alphas_reduce, dim=-1)
        if not self.edge_normalization:
            return wn, wr, None, None
        return wn, wr, self._edge_softmax(self.betas_normal), self._edge_softmax(self.betas_reduce)


class SearchModel(nn.Module):
    """Supernet + ArchParams; ``weights()`` and ``alphas()`` are disjoint parameter lists."""

    def __init__(self, net: Supernet, arch: ArchParams) -> None:
        super().__init__()
        if arch.alphas_normal.shape[1] != len(net.op_names):
            raise ValueError(f"ArchParams has {arch.alphas_normal.shape[1]} ops per edge, "
                             f"the supernet {len(net.op_names)}")
        self.net, self.arch = net, arch

    def weights(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def alphas(self) -> list[nn.Parameter]:
        return list(self.arch.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, *self.arch())

    def genotype(self):
        wn, wr, _, _ = self.arch()
        return derive_genotype(wn, wr, self.net.op_names, self.net.steps, self.net.multiplier)
