"""The per-edge DARTS cell: MixedOp (one edge's candidates) and Cell (normal / reduce).

This is the textbook layout, edge by edge: 14 MixedOps per cell, each running every
candidate on its input. :mod:`dartsfast.search.batched_cell` computes the same cell with
the edges leaving one state batched; this one stays as its reference, for geometry
queries (:func:`dartsfast.profiling.presets.cell_positions`) and for candidates that
cannot be batched.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast.ops import weighted_sum
from dartsfast.search.layout import edge_stride, preprocess
from dartsfast.search.recompute import recomputed
from dartsfast.search.space import NONE, build_op, check_op_names


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
        self.num_ops = len(names)
        self.ops = nn.ModuleList(build_op(names[k], op_channels, stride, affine=False) for k in active)
        # Index of each run op in the softmax row; a buffer so the gather stays on the device.
        self.register_buffer("active", torch.tensor(active, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # One node that gathers the gradients of all this edge's uses of x before they join
        # the other edges': lean mode (dartsfast.search.recompute) hands x's gradient back
        # per edge, so fast mode sums in the same order and both stay bit-identical.
        x = x.view_as(x)
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


def _call(module: nn.Module, *inputs):
    return module(*inputs)


class Cell(nn.Module):
    """A DARTS cell: two preprocessed inputs, ``steps`` nodes each fed by every earlier state."""

    def __init__(self, steps: int, multiplier: int, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool, op_names: Sequence[str], partial_channels: int = 1) -> None:
        super().__init__()
        self.reduction, self.channels = reduction, channels
        self.steps, self.multiplier = steps, multiplier
        self.preprocess0, self.preprocess1 = preprocess(c_prev_prev, c_prev, channels, reduction_prev, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(channels, edge_stride(reduction, j), op_names, partial_channels)
            for i in range(steps) for j in range(2 + i))
        # Lean memory (set by the Supernet): each edge recomputed in backward, so only one
        # edge's activations are alive at a time (dartsfast.search.recompute).
        self.recompute_edges = False

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        run = recomputed if self.recompute_edges and torch.is_grad_enabled() else _call
        offset = 0
        for _ in range(self.steps):
            outs = [run(self.edges[offset + j], h, weights[offset + j]) for j, h in enumerate(states)]
            if edge_weights is None:
                node = sum(outs[1:], outs[0])
            else:  # PC-DARTS edge normalisation: the node is a convex mix of its edges
                node = weighted_sum(outs, edge_weights[offset:offset + len(outs)])
            offset += len(states)
            states.append(node)
        return torch.cat(states[-self.multiplier:], dim=1)
