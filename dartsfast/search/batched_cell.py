"""A DARTS cell with the edges leaving each state computed together.

In a cell with 4 nodes, state j (the two cell inputs, then nodes 0..3) feeds the nodes
after it: 4, 4, 3, 2 and 1 edges, 14 in all, and every edge runs the same candidates on
the same input with its own weights. :class:`BatchedCell` evaluates each candidate once
per state instead of once per edge — 5 evaluations per cell instead of 14:

- DSConv / MBConv / Fused-MBConv candidates run widened (:func:`dartsfast.nn.widen.widen`):
  one block over E× the channels, edge e's output in its own channel slice;
- parameter-free candidates (skip_connect, the pools with their affine-free BN) give the
  same output on every edge, so they run once and the result is shared;
- anything else (sep_conv, dil_conv, user ops) runs edge by edge as in :class:`Cell`.

Each node then sums its (edge, candidate) inputs with one ``weighted_sum`` over all of
them, instead of one per edge plus the edge sums. With PC-DARTS partial channels the
channel shuffle is linear, so ``node = shuffle(cat(Σ β·w·op, Σ β·bypass))``: one
weighted sum for the op halves and one for the bypassed halves per node.

Built from a per-edge :class:`~dartsfast.search.cell.Cell` (so a seed draws the same
initial weights either way) and computing the same function; tests compare the two.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast.nn.classic import PoolBN
from dartsfast.nn.widen import can_widen, widen
from dartsfast.ops import weighted_sum
from dartsfast.search.cell import Cell, channel_shuffle


class WideFanOut(nn.Module):
    """One candidate on E edges as one widened block; returns the E outputs (channel slices)."""

    def __init__(self, ops: list[nn.Module], out_channels: int) -> None:
        super().__init__()
        self.block = widen(ops)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.block(x).split(self.out_channels, dim=1))


class SharedFanOut(nn.Module):
    """A parameter-free candidate: the same output on every edge, computed once."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.op, self.edges = ops[0], len(ops)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.op(x)] * self.edges


class EdgeFanOut(nn.Module):
    """A candidate that cannot be batched: each edge runs its own module."""

    def __init__(self, ops: list[nn.Module]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [op(x) for op in self.ops]


def _shareable(op: nn.Module) -> bool:
    # Only known deterministic modules: a parameter-free user op may draw random numbers,
    # and sharing would then give every edge the same draw.
    return type(op) in (nn.Identity, PoolBN) and not any(True for _ in op.parameters())


def make_fanout(ops: list[nn.Module], out_channels: int) -> nn.Module:
    """The cheapest exact way to run ``ops`` (one candidate, one module per edge) on a shared input."""
    if all(can_widen(op) for op in ops):
        return WideFanOut(ops, out_channels)
    if _shareable(ops[0]):
        return SharedFanOut(ops)
    return EdgeFanOut(ops)


class BatchedCell(nn.Module):
    """The function of ``cell`` (a per-edge :class:`Cell`, whose modules it takes over) with
    the edges leaving each state batched; same ``forward`` signature."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.reduction, self.steps, self.multiplier = cell.reduction, cell.steps, cell.multiplier
        self.preprocess0, self.preprocess1 = cell.preprocess0, cell.preprocess1
        first = cell.edges[0]
        self.partial_channels = first.partial_channels
        op_channels = cell.channels // first.partial_channels
        active = first.active.tolist()
        offsets = [sum(2 + i for i in range(n)) for n in range(self.steps)]  # first edge of each node
        self.strides: list[int] = []
        self.fanouts = nn.ModuleList()
        for j in range(self.steps + 1):  # the last node feeds no edge
            edges = [offsets[i] + j for i in self.nodes_fed_by(j)]
            self.strides.append(cell.edges[edges[0]].stride)
            self.fanouts.append(nn.ModuleList(
                make_fanout([cell.edges[e].ops[k] for e in edges], op_channels) for k in range(len(active))))
        # Node i's inputs come state-major, candidate-minor; its weights are the matching
        # entries of the flattened [edges, ops] softmax, gathered with one take().
        self.node_sizes = [len(active) * (2 + i) for i in range(self.steps)]
        index = [(offsets[i] + j) * first.num_ops + k for i in range(self.steps) for j in range(2 + i) for k in active]
        self.register_buffer("node_index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.edge_sizes = [2 + i for i in range(self.steps)]
        self.register_buffer("unit_edge_weights", torch.ones(sum(self.edge_sizes)), persistent=False)

    def nodes_fed_by(self, state: int) -> range:
        """Nodes that read state ``state`` (0, 1: the cell inputs; j ≥ 2: node j − 2)."""
        return range(max(0, state - 1), self.steps)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                edge_weights: torch.Tensor | None = None) -> torch.Tensor:
        if edge_weights is not None:  # PC-DARTS edge normalisation scales every op of the edge
            weights = weights * edge_weights[:, None]
        # take() indexes the flattened [edges, ops] softmax directly: one gather for all nodes.
        node_weights = weights.take(self.node_index).split(self.node_sizes)
        partial = self.partial_channels > 1
        inputs: list[list[torch.Tensor]] = [[] for _ in range(self.steps)]
        bypassed: list[list[torch.Tensor]] = [[] for _ in range(self.steps)]

        def fan_out(j: int, h: torch.Tensor) -> None:
            nodes = self.nodes_fed_by(j)
            if partial:
                c_op = h.shape[1] // self.partial_channels
                h, rest = h.split([c_op, h.shape[1] - c_op], dim=1)
                if self.strides[j] == 2:
                    rest = F.max_pool2d(rest, 2, 2, ceil_mode=True)
                for i in nodes:
                    bypassed[i].append(rest)
            for fanout in self.fanouts[j]:
                for i, y in zip(nodes, fanout(h)):
                    inputs[i].append(y)

        states = [self.preprocess0(s0), self.preprocess1(s1)]
        fan_out(0, states[0])
        fan_out(1, states[1])
        if partial:  # the bypassed halves are summed with the edge weights (1 without normalisation)
            bypass_weights = (self.unit_edge_weights if edge_weights is None else edge_weights).split(self.edge_sizes)
        for i in range(self.steps):
            # Under autocast a pass-through op (skip_connect) can keep another dtype than a conv.
            xs = [x.to(inputs[i][0].dtype) for x in inputs[i]]
            node = weighted_sum(xs, node_weights[i])
            if partial:
                rest = weighted_sum([r.to(node.dtype) for r in bypassed[i]], bypass_weights[i])
                node = channel_shuffle(torch.cat([node, rest], dim=1), self.partial_channels)
            states.append(node)
            if i + 2 <= self.steps:
                fan_out(i + 2, node)
        return torch.cat(states[-self.multiplier:], dim=1)

