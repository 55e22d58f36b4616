"""Where a Supernet's candidate ops run: the (C, H, W, stride) of every edge of every cell.

A latency lookup table is keyed by these positions (:mod:`dartsfast.search.latency_lut`) and
the search's latency term sums it over them (:mod:`dartsfast.search.latency_term`), so both
read them off a real per-edge :class:`~dartsfast.search.supernet.Supernet` (forward hooks on
each MixedOp during one batch-1 pass) rather than re-deriving the geometry: stem of 3·C
channels, reduction cells at layers//3 and 2·layers//3 doubling C, stride-2 edges from a
reduction cell's two inputs, and whatever size odd resolutions round to.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from dartsfast.search.cell import Cell
from dartsfast.search.space import num_edges
from dartsfast.search.supernet import Supernet

Position = tuple[int, int, int, int]  # (op channels C, input H, input W, stride)


@dataclasses.dataclass(frozen=True)
class CellEdges:
    """One cell of the supernet: whether it reduces, and each edge's position in edge order
    (the rows of the alphas). C is the channels the ops see: C / K under PC-DARTS."""

    reduction: bool
    edges: tuple[Position, ...]


def _check_input_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 2:
        raise ValueError(f"input size must be an int ≥ 2, got {image_size!r}")
    return image_size


def edge_positions(channels: int, layers: int, image_size: int, partial_channels: int = 1,
                   op_names: Sequence[str] = ("skip_connect",)) -> list[CellEdges]:
    """Every cell's edge positions, in network order. Uses the cheapest op list by default:
    only the geometry matters. Leaves the global RNG as it found it (building the probe
    network draws initial weights), so a search that asks gets the same bits as one that
    does not."""
    _check_input_size(image_size)
    with torch.random.fork_rng(devices=[]):
        net = Supernet(channels, num_classes=2, layers=layers, op_names=op_names, in_channels=1,
                       partial_channels=partial_channels, edge_batching=False).eval()  # one MixedOp per edge
    found: dict[int, Position] = {}
    owner = {id(m): i for cell in net.cells for i, m in enumerate(cell.edges)}

    def hook(module, inputs):
        _, c, h, w = inputs[0].shape
        found[id(module)] = (c // module.partial_channels, h, w, module.stride)

    handles = [m.register_forward_pre_hook(hook) for cell in net.cells for m in cell.edges]
    try:
        with torch.no_grad():
            alphas = torch.full((num_edges(net.steps), len(op_names)), 1.0 / len(op_names))
            net(torch.zeros(1, 1, image_size, image_size), alphas, alphas)
    finally:
        for h in handles:
            h.remove()
    cells = []
    for cell in net.cells:
        assert isinstance(cell, Cell)
        edges = [None] * len(cell.edges)
        for m in cell.edges:
            edges[owner[id(m)]] = found[id(m)]
        cells.append(CellEdges(bool(cell.reduction), tuple(edges)))
    return cells


def cell_positions(channels: int, layers: int, image_size: int, op_names: Sequence[str] = ("skip_connect",),
                   partial_channels: int = 1) -> list[tuple[int, int, int, int, int]]:
    """Unique (C, H, W, stride, count) of every mixed-op edge of a Supernet, in network order
    (the order the forward pass first reaches them); ``count`` is the number of edges there."""
    seen: dict[Position, int] = {}
    for cell in edge_positions(channels, layers, image_size, partial_channels, op_names):
        for pos in cell.edges:
            seen[pos] = seen.get(pos, 0) + 1
    return [(*key, count) for key, count in seen.items()]
