"""The discrete network a genotype describes: DARTS evaluation cells stacked like the supernet.

DARTS evaluation (Liu et al. 2019, §3.2) stacks ``layers`` copies of the found cells, with
reduction cells at 1/3 and 2/3 of the depth (the stem, the reductions and the channel
bookkeeping are :mod:`dartsfast.search.layout`'s, shared with :class:`~dartsfast.search.Supernet`),
plus drop path and an optional auxiliary head. :mod:`dartsfast.train` trains it.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn

from dartsfast._validate import check_probability, is_int
from dartsfast.nn.layers import DropPath
from dartsfast.search.layout import build_cells, edge_stride, preprocess, reduction_layers
from dartsfast.search.space import Genotype, build_op

__all__ = ["AuxiliaryHead", "DiscreteCell", "DiscreteNetwork"]


class DiscreteCell(nn.Module):
    """One DARTS evaluation cell: each intermediate node sums two ops of the genotype.

    Inputs ``s0`` [N, c_prev_prev, H0, W0] (the cell two back) and ``s1`` [N, c_prev, H, W]
    (the previous cell); when ``reduction_prev`` the previous cell halved H, W, so s0 is
    reduced by a FactorizedReduce (H0 = 2H). Output [N, len(concat) * c, H', W'] with
    H' = H / 2 in a reduction cell (its ops reading s0/s1 have stride 2), else H.

    ``drop_path``: per-sample drop probability applied (training only) to every op output
    except identities (DARTS: dropping a skip would remove the only path for the sample).
    """

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        self.reduction = bool(reduction)
        self.preprocess0, self.preprocess1 = preprocess(c_prev_prev, c_prev, c, reduction_prev, affine=True)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.steps = len(edges) // 2
        self.multiplier = len(self.concat)
        self.indices = tuple(idx for _, idx in edges)
        self.ops = nn.ModuleList()
        self.drop_paths = nn.ModuleList()
        for name, idx in edges:
            op = build_op(name, c, edge_stride(reduction, idx), affine=True)
            self.ops.append(op)
            # Identity ops get no DropPath (nn.Identity), so forward has no branches.
            self.drop_paths.append(nn.Identity() if isinstance(op, nn.Identity) else DropPath(drop_path))

    def set_drop_path(self, prob: float) -> None:
        for d in self.drop_paths:
            if isinstance(d, DropPath):
                d.drop_prob = prob

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            a, b = 2 * i, 2 * i + 1
            h1 = self.drop_paths[a](self.ops[a](states[self.indices[a]]))
            h2 = self.drop_paths[b](self.ops[b](states[self.indices[b]]))
            states.append(h1 + h2)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS auxiliary classifier on the 2/3-depth features [N, C, H, W] → logits [N, classes].

    DARTS pools 8×8 maps with a 5×5/3 average pool to 2×2, then a 2×2 conv gives 1×1; an
    adaptive pool to 2×2 does the same at 8×8 and also works for the 2×2–4×4 maps of
    16-px inputs.
    """

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DiscreteNetwork(nn.Module):
    """The network a genotype describes (DARTS NetworkCIFAR), on the supernet's layout.

    stem (3×3 conv, ``stem_multiplier * channels``, BN) → ``layers`` cells, reduction cells
    (channels doubled, H/W halved) at ``layers // 3`` and ``2 * layers // 3`` → global
    average pool → linear. Input [N, in_channels, H, W] (NCHW or channels_last); output
    logits [N, num_classes], or ``(logits, aux_logits)`` in training mode when
    ``auxiliary`` (the auxiliary head reads the output of cell ``2 * layers // 3``).

    ``drop_path_prob`` is a settable attribute (the trainer ramps it linearly per epoch).
    """

    def __init__(self, genotype: Genotype, channels: int = 16, num_classes: int = 10,
                 layers: int = 8, in_channels: int = 3, auxiliary: bool = False,
                 drop_path_prob: float = 0.0, stem_multiplier: int = 3) -> None:
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype must be a Genotype, got {type(genotype).__name__}")
        for name, value in (("channels", channels), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("stem_multiplier", stem_multiplier)):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.genotype = genotype
        self.layers = layers
        self.auxiliary = bool(auxiliary)
        self.reduction_layers = reduction_layers(layers)
        self.aux_layer = 2 * layers // 3
        stack = build_cells(in_channels, channels, layers, stem_multiplier, functools.partial(DiscreteCell, genotype))
        self.stem, self.cells = stack.stem, stack.cells
        self.auxiliary_head = AuxiliaryHead(stack.out_channels[self.aux_layer], num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(stack.out_channels[-1], num_classes)
        self._drop_path_prob = 0.0
        self.drop_path_prob = drop_path_prob

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        value = check_probability("drop_path_prob", value)
        self._drop_path_prob = value
        for cell in self.cells:
            cell.set_drop_path(value)

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_layer and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        if aux_logits is not None:
            return logits, aux_logits
        return logits
