"""The classic DARTS candidate ops (Liu et al. 2019) as modules.

Each maps [N, C_in, H, W] → [N, C_out, H/stride, W/stride]. ``affine`` is False during
search (DARTS: the alphas, not per-op BN scales, decide an op's weight) and True when
the found network is trained.
"""
from __future__ import annotations

import torch
import torch.nn as nn


class ReLUConvBN(nn.Module):
    """ReLU → k×k conv → BN (the cell's 1×1 preprocessing and the stem of the classifier head)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU → dilated depthwise k×k → 1×1 → BN."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel_size, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked (ReLU → depthwise k×k → 1×1 → BN); the first carries the stride."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve H and W with two stride-2 1×1 convs offset by one pixel (no information skipped)."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even c_out, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        # Odd H/W: pad one row/column so the shifted branch has the same output size.
        shifted = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class PoolBN(nn.Module):
    """3×3 max or average pooling followed by an affine-free BN (DARTS adds it in search)."""

    def __init__(self, kind: str, c: int, stride: int, affine: bool = False, with_bn: bool = True) -> None:
        super().__init__()
        if kind == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        elif kind == "avg":
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        else:
            raise ValueError(f"pool kind must be 'max' or 'avg', got {kind!r}")
        self.bn = nn.BatchNorm2d(c, affine=affine) if with_bn else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pool(x))


class Zero(nn.Module):
    """The 'none' op: zeros of the output shape (only the discrete network ever runs it)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, ::self.stride, ::self.stride] * 0.0
