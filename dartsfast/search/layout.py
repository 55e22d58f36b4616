"""The stacking the supernet and the discrete network share (DARTS, Liu et al. 2019).

stem (3×3 conv to ``stem_multiplier * channels``, BN) → ``layers`` cells. The cells at
1/3 and 2/3 of the depth reduce: they double the channels and halve H, W (their edges
reading the two cell inputs have stride 2). Each cell reads the outputs of the two cells
before it (the stem's output stands in for the missing ones); the older input is reduced
by a FactorizedReduce when the previous cell halved H, W, else mapped by a 1×1
ReLUConvBN, so both arrive at the cell's own channels and size.

Both networks build their cells through :func:`build_cells`, so they agree on which cells
reduce and how many channels each one has; the parameter order (stem, then cell by cell)
is what their state_dicts and saved files rely on.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch.nn as nn

from dartsfast.nn.classic import FactorizedReduce, ReLUConvBN

# make_cell(c_prev_prev, c_prev, c, reduction, reduction_prev) -> a cell with a ``multiplier``
# attribute: how many c-channel states it concatenates into its output.
CellFactory = Callable[[int, int, int, bool, bool], nn.Module]


class Stack(NamedTuple):
    stem: nn.Sequential
    cells: nn.ModuleList
    out_channels: tuple[int, ...]  # channels of each cell's output


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Indices of the reduction cells: ``layers // 3`` and ``2 * layers // 3`` (one cell if they meet)."""
    return tuple(sorted({layers // 3, 2 * layers // 3}))


def edge_stride(reduction: bool, input_index: int) -> int:
    """An op reading a cell input (index 0 or 1) of a reduction cell halves H, W."""
    return 2 if reduction and input_index < 2 else 1


def preprocess(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool,
               affine: bool) -> tuple[nn.Module, nn.Module]:
    """The modules that bring a cell's two inputs to ``c`` channels at the cell's input size."""
    pre0 = (FactorizedReduce(c_prev_prev, c, affine=affine) if reduction_prev
            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=affine))
    return pre0, ReLUConvBN(c_prev, c, 1, 1, 0, affine=affine)


def build_cells(in_channels: int, channels: int, layers: int, stem_multiplier: int,
                make_cell: CellFactory) -> Stack:
    """The stem and ``layers`` cells from ``make_cell``, with the channel bookkeeping between them.

    Modules are created in forward order (stem, cell 0, cell 1, ...), so a seeded build
    draws the same initial weights whichever network calls it.
    """
    c_stem = stem_multiplier * channels
    stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
    c_pp, c_p, c_curr = c_stem, c_stem, channels
    reducing = reduction_layers(layers)
    cells, out_channels = nn.ModuleList(), []
    reduction_prev = False
    for i in range(layers):
        reduction = i in reducing
        if reduction:
            c_curr *= 2
        cell = make_cell(c_pp, c_p, c_curr, reduction, reduction_prev)
        cells.append(cell)
        reduction_prev = reduction
        c_pp, c_p = c_p, cell.multiplier * c_curr
        out_channels.append(c_p)
    return Stack(stem, cells, tuple(out_channels))
