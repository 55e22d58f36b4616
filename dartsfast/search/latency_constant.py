"""The part of a discrete network's latency no candidate op accounts for: stem, the cells'
preprocessing, node sums and concatenations, pooling and classifier (issue 18).

A latency table times each op alone at its position; the whole network adds the modules
around the ops. They do not depend on which ops a genotype picks (every DARTS cell runs
both preprocessing modules, sums two inputs per node and concatenates its intermediate
nodes), so they are one constant per network shape, measured once: the network of
:class:`~dartsfast.search.network.DiscreteNetwork` (the one ``dartsfast train`` builds)
with every op replaced by :class:`Placeholder`, which costs nothing (the input itself, or a
strided view of it where the op halves H and W). The table keeps it as ``constant_s``,
and the search's expected latency is this constant plus the ops' entries.

What the table's entries and this constant still miss is a cost per op instance: each op
is timed alone on one input over and over, and in the network it reads a fresh tensor with
its own weights. :func:`dartsfast.search.latency_lut.per_op_overhead` measures it on whole
networks of one op (:func:`skeleton_genotype` with that op, :func:`op_instances`).

Measured on the 2-core CPU of this project (digits shape: 3 cells, 8 channels, 16×16, 1
input channel, batch 1, inference, 1 thread): 0.51 ms, against 2.5–10 ms for whole
networks of the default space.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dartsfast.search.layout import edge_stride
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.space import STEPS, Genotype


class Placeholder(nn.Module):
    """A free stand-in for an op: the input (stride 1) or its every second row and column (stride 2)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, ::self.stride, ::self.stride]


def skeleton_genotype(steps: int = STEPS, op: str = "skip_connect") -> Genotype:
    """A genotype of DARTS's shape (two edges per node, the intermediate nodes concatenated),
    every node fed by ``op`` from the cell's two inputs."""
    edges = tuple((op, i) for _ in range(steps) for i in (0, 1))
    concat = tuple(range(2, 2 + steps))
    return Genotype(edges, concat, edges, concat)


def skeleton_network(channels: int, layers: int, in_channels: int, num_classes: int,
                     steps: int = STEPS) -> DiscreteNetwork:
    """The discrete network of that shape with every op a :class:`Placeholder` (eval mode)."""
    net = DiscreteNetwork(skeleton_genotype(steps), channels, num_classes, layers, in_channels)
    for cell in net.cells:
        for i, idx in enumerate(cell.indices):
            cell.ops[i] = Placeholder(edge_stride(cell.reduction, idx))
    return net.eval()


def op_instances(net: DiscreteNetwork) -> int:
    """The ops of ``net``'s cells that run something (not an identity): each costs a call of
    its own on top of its table entry (:func:`dartsfast.search.latency_lut.per_op_overhead`)."""
    return sum(not isinstance(op, nn.Identity) for cell in net.cells for op in cell.ops)
