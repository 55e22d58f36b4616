"""The DARTS supernet: MixedOp, Cell (normal / reduce), Supernet, and ArchParams apart.

The network never owns its architecture parameters: ``Supernet.forward`` takes the
softmaxed weights, so weight and alpha optimisers see disjoint parameter sets (and
DDP can wrap the network while the alphas are all-reduced on their own).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast.ops import weighted_sum
from dartsfast.search.layout import build_cells, edge_stride, preprocess
from dartsfast.search.space import MULTIPLIER, NONE, STEPS, build_op, check_op_names, derive_genotype, num_edges


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class MixedOp(nn.Module):
    """``Σ_k w_k · op_k(x)`` over the candidates, through the fused ``weighted_sum`` op.

    'none' is not run: it contributes zero but keeps its share of the softmax (so the
    other ops' weights are what DARTS computes). With ``partial_channels`` = K > 1
    (PC-DARTS) only C/K channels go through the ops; the rest bypass them (max-pooled in
    a reduction edge) and the halves are channel-shuffled.
    """

    def __init__(self, channels: int, stride: int, op_names: Sequence[str], partial_channels: int = 1) -> None:
        super().__init__()
        if channels % partial_channels:
            raise ValueError(f"partial_channels={partial_channels} must divide the {channels} channels")
        self.partial_channels = partial_channels
        self.stride = stride
        op_channels = channels // partial_channels
        names = check_op_names(op_names)
        active = [k for k, name in enumerate(names) if name != NONE]
        self.ops = nn.ModuleList(build_op(names[k], op_channels, stride, affine=False) for k in active)
        # Index of each run op in the softmax row; a buffer so the gather stays on the device.
        self.register_buffer("active", torch.tensor(active, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        k = self.partial_channels
        if k > 1:
            c_op = x.shape[1] // k
            x, bypass = x[:, :c_op], x[:, c_op:]
        outs = [op(x) for op in self.ops]
        # Under autocast an op that passes its input through (skip_connect) can return
        # another dtype than a conv op; the fused sum takes one dtype.
        outs = [o.to(outs[0].dtype) for o in outs]
        out = weighted_sum(outs, weights.index_select(0, self.active))
        if k > 1:
            if self.stride == 2:
                bypass = F.max_pool2d(bypass, 2, 2, ceil_mode=True)
            out = channel_shuffle(torch.cat([out, bypass.to(out.dtype)], dim=1), k)
        return out


class Cell(nn.Module):
    """A DARTS cell: two preprocessed inputs, ``steps`` nodes each fed by every earlier state."""

    def __init__(self, steps: int, multiplier: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, op_names: Sequence[str], partial_channels: int = 1) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0, self.preprocess1 = preprocess(c_prev_prev, c_prev, channels, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(channels, edge_stride(reduction, j), op_names, partial_channels)
            for i in range(steps) for j in range(2 + i))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        offset = 0
        for _ in range(self.steps):
            outs = [self.edges[offset + j](h, weights[offset + j]) for j, h in enumerate(states)]
            if edge_weights is None:
                node = sum(outs[1:], outs[0])
            else:  # PC-DARTS edge normalisation: the node is a convex mix of its edges
                node = weighted_sum(outs, edge_weights[offset:offset + len(outs)])
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)


class Supernet(nn.Module):
    """Stem → ``layers`` cells (reduction at 1/3 and 2/3 depth, channels doubled; the layout of
    :mod:`dartsfast.search.layout`) → classifier.

    ``forward(x, weights_normal, weights_reduce)`` with softmaxed alphas of shape
    [num_edges, num_ops]; x: [N, in_channels, H, W] → logits [N, num_classes].
    """

    def __init__(self, channels: int, num_classes: int, layers: int, op_names: Sequence[str],
                 in_channels: int = 3, steps: int = STEPS, multiplier: int = MULTIPLIER,
                 stem_multiplier: int = 3, partial_channels: int = 1) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("partial_channels", partial_channels)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if layers < 3:
            raise ValueError(f"layers must be at least 3 (two reduction cells at 1/3 and 2/3 depth), got {layers}")
        self.op_names = check_op_names(op_names)
        self.steps, self.multiplier = steps, multiplier
        stack = build_cells(in_channels, channels, layers, stem_multiplier, lambda c_pp, c_p, c, red, red_prev: Cell(
            steps, multiplier, c_pp, c_p, c, red, red_prev, self.op_names, partial_channels))
        self.stem, self.cells = stack.stem, stack.cells
        self.classifier = nn.Linear(stack.out_channels[-1], num_classes)

    def forward(self, x: torch.Tensor, weights_normal: torch.Tensor, weights_reduce: torch.Tensor,
                edges_normal: torch.Tensor | None = None, edges_reduce: torch.Tensor | None = None) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            w, e = (weights_reduce, edges_reduce) if cell.reduction else (weights_normal, edges_normal)
            s0, s1 = s1, cell(s0, s1, w, e)
        return self.classifier(s1.mean((2, 3)).float())


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
