"""EfficientNetV2 blocks, timm-style: DSConv, MBConv (with the fused middle), FusedMBConv.

Argument names and submodule names follow timm's ``_efficientnet_blocks.py``
(DepthwiseSeparableConv, InvertedResidual, EdgeResidual), so configs and state dicts read
the same. Absent parts are ``nn.Identity()``; the only branch in a ``forward`` is the
residual, fixed at construction (``has_skip``).

Common arguments:
    in_chs, out_chs: input / output channels.
    dw_kernel_size: odd kernel size k of the spatial conv (padding k//2).
    stride: 1 or 2, applied by the spatial conv; output H' = (H - 1)//stride + 1.
    exp_ratio: expansion, mid channels = max(1, round(in_chs * exp_ratio)).
    se_ratio: SE bottleneck = max(1, round(in_chs * se_ratio)) of the *block input*
        channels (EfficientNet's convention); 0 disables SE.
    act_layer: activation factory (``act_layer()``), also used inside SE.
    norm_layer: norm factory (``norm_layer(num_channels)``).
    drop_path_rate: stochastic-depth probability of the residual branch, in [0, 1).
    noskip: no residual even where shapes allow one (timm's ``noskip``; the DARTS search
        space uses it because a cell node already sums its inputs and skip_connect is a
        candidate of its own).

Every block maps [N, in_chs, H, W] → [N, out_chs, H', W'] and keeps the input's memory
format (NCHW or channels_last). Residual (shortcut) only when stride == 1 and
in_chs == out_chs; drop path only on that residual branch.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from dartsfast._validate import (
    check_channels,
    check_kernel_size,
    check_non_negative,
    check_positive,
    check_probability,
    check_stride,
)
from dartsfast.nn.layers import DropPath, LayerFactory, SqueezeExcite, se_channels
from dartsfast.ops import dwconv_se

__all__ = ["DSConv", "DepthwiseSE", "FusedDepthwiseSE", "FusedMBConv", "MBConv",
           "make_depthwise_se", "why_not_fusable"]


def _check_common(in_chs, out_chs, dw_kernel_size, stride, se_ratio, drop_path_rate):
    return (check_channels("in_chs", in_chs), check_channels("out_chs", out_chs),
            check_kernel_size("dw_kernel_size", dw_kernel_size), check_stride("stride", stride),
            check_non_negative("se_ratio", se_ratio), check_probability("drop_path_rate", drop_path_rate))


def _depthwise(chs: int, kernel_size: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(chs, chs, kernel_size, stride, padding=kernel_size // 2, groups=chs, bias=False)


def _drop_path(has_skip: bool, rate: float) -> nn.Module:
    # Dropping a non-residual block's only path would zero its output: drop path lives
    # on the residual branch alone.
    return DropPath(rate) if has_skip and rate > 0 else nn.Identity()


# ----------------------------------------------------------------------------- MBConv middle

def why_not_fusable(bn2: nn.Module, act2: nn.Module, se: nn.Module) -> str:
    """Why ``dwconv_se`` cannot stand in for ``se(act2(bn2(conv_dw(x))))``; '' when it can.

    The op computes exactly BatchNorm2d (affine, running stats, momentum average) →
    SiLU → SE with SiLU and sigmoid, so anything else must run the composition.
    """
    if not isinstance(se, SqueezeExcite):
        return "the block has no squeeze-excitation (se_ratio == 0)"
    if type(act2) is not nn.SiLU or type(se.act1) is not nn.SiLU:
        return f"act_layer is {type(act2).__name__}, the fused op computes SiLU"
    if type(se.gate) is not nn.Sigmoid:
        return f"the SE gate is {type(se.gate).__name__}, the fused op computes sigmoid"
    if type(bn2) is not nn.BatchNorm2d:
        return f"norm_layer gives {type(bn2).__name__}, the fused op computes nn.BatchNorm2d"
    if not (bn2.affine and bn2.track_running_stats):
        return "the BatchNorm2d needs affine=True and track_running_stats=True"
    if bn2.momentum is None:
        return "the BatchNorm2d has momentum=None (cumulative average)"
    return ""


class DepthwiseSE(nn.Module):
    """MBConv middle as the plain composition ``se(act2(bn2(conv_dw(x))))``.

    Args:
        conv_dw: k×k depthwise conv (groups == channels, no bias), carries the stride.
        bn2, act2, se: the norm, activation and SE (or ``nn.Identity``) after it.

    Shape: [N, C, H, W] → [N, C, H', W'].
    """

    fused = False

    def __init__(self, conv_dw: nn.Conv2d, bn2: nn.Module, act2: nn.Module, se: nn.Module) -> None:
        super().__init__()
        self.conv_dw, self.bn2, self.act2, self.se = conv_dw, bn2, act2, se

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.act2(self.bn2(self.conv_dw(x))))


class FusedDepthwiseSE(DepthwiseSE):
    """MBConv middle through the fused op :func:`dartsfast.ops.dwconv_se`.

    Same submodules (hence the same state dict) as :class:`DepthwiseSE` and the same
    result, including ``bn2``'s running-stat and ``num_batches_tracked`` updates;
    ``act2`` and the SE's ``act1``/``gate`` are computed inside the op.
    Raises ValueError when the parts are not what the op computes (see :func:`why_not_fusable`).
    """

    fused = True

    def __init__(self, conv_dw: nn.Conv2d, bn2: nn.Module, act2: nn.Module, se: nn.Module) -> None:
        reason = why_not_fusable(bn2, act2, se)
        if reason:
            raise ValueError(f"cannot use the fused dwconv_se middle: {reason}")
        super().__init__(conv_dw, bn2, act2, se)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bn_silu_se_fused(x, self.conv_dw.weight, self.conv_dw.stride[0], self.bn2, self.se)


def bn_silu_se_fused(x: torch.Tensor, dw_weight: torch.Tensor, stride: int, bn: nn.BatchNorm2d,
                     se: "SqueezeExcite") -> torch.Tensor:
    """``se(silu(bn(depthwise_conv(x, dw_weight))))`` through :func:`dwconv_se`, with
    ``bn``'s bookkeeping (num_batches_tracked, momentum=None) done as nn.BatchNorm2d does."""
    # nn.BatchNorm2d's bookkeeping, verbatim: count the batch, and with momentum=None
    # (set after construction) fall back to the cumulative average it would use.
    momentum = bn.momentum
    tracking = bn.training and bn.track_running_stats
    if tracking and bn.num_batches_tracked is not None:  # None: counter removed (the search's BNs)
        bn.num_batches_tracked.add_(1)
        if momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    # As nn.BatchNorm2d: training without tracking normalises by the batch and leaves the
    # running statistics alone (the search's auxiliary passes, search.bilevel).
    use_running = not bn.training or bn.track_running_stats
    running_mean, running_var = (bn.running_mean, bn.running_var) if use_running else (None, None)
    # A grouped SE (a widened block: dartsfast.nn.widen) passes its grouped weights as they
    # are, [Cr, C/G] and [C, Cr/G]; the op takes them as G SEs side by side.
    return dwconv_se(
        x, dw_weight, bn.weight, bn.bias, running_mean, running_var,
        se.conv_reduce.weight.flatten(1), se.conv_reduce.bias, se.conv_expand.weight.flatten(1), se.conv_expand.bias,
        stride=stride, training=bn.training or running_mean is None, momentum=momentum, eps=bn.eps)


def make_depthwise_se(chs: int, rd_chs: int, dw_kernel_size: int, stride: int, se_ratio: float,
                      act_layer: LayerFactory, norm_layer: LayerFactory,
                      fused: Optional[bool] = None) -> DepthwiseSE:
    """Build the MBConv middle once (one draw of initial weights either way) and pick its
    forward: ``fused=None`` fuses when possible, True requires it, False never fuses."""
    conv_dw = _depthwise(chs, dw_kernel_size, stride)
    bn2, act2 = norm_layer(chs), act_layer()
    se = SqueezeExcite(chs, rd_channels=rd_chs, act_layer=act_layer) if se_ratio > 0 else nn.Identity()
    if fused is None:
        fused = not why_not_fusable(bn2, act2, se)
    cls = FusedDepthwiseSE if fused else DepthwiseSE
    return cls(conv_dw, bn2, act2, se)


# ----------------------------------------------------------------------------- blocks

class DSConv(nn.Module):
    """Depthwise-separable conv (timm DepthwiseSeparableConv; EfficientNet's first stage).

    conv_dw (k×k depthwise, stride) → bn1 → act1 → se → conv_pw (1x1) → bn2 (no activation)
    → + shortcut. Parameter count: in·k² + 2·in + SE + in·out + 2·out.
    See the module docstring for the arguments; shape [N, in_chs, H, W] → [N, out_chs, H', W'].
    """

    def __init__(self, in_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 se_ratio: float = 0.25, act_layer: LayerFactory = nn.SiLU,
                 norm_layer: LayerFactory = nn.BatchNorm2d, drop_path_rate: float = 0.0,
                 noskip: bool = False) -> None:
        super().__init__()
        in_chs, out_chs, k, stride, se_ratio, dpr = _check_common(
            in_chs, out_chs, dw_kernel_size, stride, se_ratio, drop_path_rate)
        self.has_skip = stride == 1 and in_chs == out_chs and not noskip
        self.conv_dw = _depthwise(in_chs, k, stride)
        self.bn1 = norm_layer(in_chs)
        self.act1 = act_layer()
        self.se = (SqueezeExcite(in_chs, rd_channels=se_channels(in_chs, se_ratio), act_layer=act_layer)
                   if se_ratio > 0 else nn.Identity())
        self.conv_pw = nn.Conv2d(in_chs, out_chs, 1, bias=False)
        self.bn2 = norm_layer(out_chs)
        self.drop_path = _drop_path(self.has_skip, dpr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.se(self.act1(self.bn1(self.conv_dw(x))))
        x = self.bn2(self.conv_pw(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class MBConv(nn.Module):
    """Mobile inverted bottleneck (timm InvertedResidual; EfficientNet's MBConv).

    conv_pw (1x1, in→mid) → bn1 → act1 → dw_se [conv_dw (k×k depthwise, stride) → bn2 → act2
    → se] → conv_pwl (1x1, mid→out) → bn3 (no activation) → + shortcut.

    ``dw_se`` runs the fused op :func:`dartsfast.ops.dwconv_se` when act_layer is nn.SiLU,
    norm_layer gives an affine nn.BatchNorm2d with running stats and a momentum, and
    se_ratio > 0; otherwise the plain composition. Both hold the same parameters, so
    state dicts are interchangeable; ``self.fused`` says which one runs.

    Args (beyond the module docstring's):
        fused: None (default) fuses when possible; True requires the fused op (ValueError
            saying why when it cannot); False forces the composition (e.g. as a reference).

    Shape: [N, in_chs, H, W] → [N, out_chs, H', W'].
    """

    def __init__(self, in_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 exp_ratio: float = 4.0, se_ratio: float = 0.25, act_layer: LayerFactory = nn.SiLU,
                 norm_layer: LayerFactory = nn.BatchNorm2d, drop_path_rate: float = 0.0,
                 fused: Optional[bool] = None, noskip: bool = False) -> None:
        super().__init__()
        in_chs, out_chs, k, stride, se_ratio, dpr = _check_common(
            in_chs, out_chs, dw_kernel_size, stride, se_ratio, drop_path_rate)
        mid_chs = max(1, round(in_chs * check_positive("exp_ratio", exp_ratio)))
        self.has_skip = stride == 1 and in_chs == out_chs and not noskip
        self.conv_pw = nn.Conv2d(in_chs, mid_chs, 1, bias=False)
        self.bn1 = norm_layer(mid_chs)
        self.act1 = act_layer()
        self.dw_se = make_depthwise_se(mid_chs, se_channels(in_chs, se_ratio), k, stride, se_ratio,
                                       act_layer, norm_layer, fused)
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False)
        self.bn3 = norm_layer(out_chs)
        self.drop_path = _drop_path(self.has_skip, dpr)

    @property
    def fused(self) -> bool:
        """True when the middle runs :func:`dartsfast.ops.dwconv_se`."""
        return self.dw_se.fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.dw_se(x)
        x = self.bn3(self.conv_pwl(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x


class FusedMBConv(nn.Module):
    """Fused-MBConv (timm EdgeResidual; EfficientNetV2's early stages).

    conv_exp (k×k DENSE conv, in→mid, stride) → bn1 → act1 → se → conv_pwl (1x1, mid→out)
    → bn2 (no activation) → + shortcut. The k×k conv replaces MBConv's 1x1 expand +
    depthwise pair: more FLOPs, but dense convs use accelerators far better at small H, W.

    With exp_ratio == 1 (Fused-MBConv1) there is no expansion: conv_exp goes in→out,
    followed by bn1 → act1 → se, and conv_pwl/bn2 are nn.Identity.
    Default se_ratio is 0: EfficientNetV2 uses no SE in its fused stages. With SE,
    ``fused`` works as in :class:`MBConv`: bn1 → act1 → se runs through
    :func:`dartsfast.ops.dwconv_se` (None: when possible; True: required; False: never).

    Shape: [N, in_chs, H, W] → [N, out_chs, H', W'].
    """

    def __init__(self, in_chs: int, out_chs: int, dw_kernel_size: int = 3, stride: int = 1,
                 exp_ratio: float = 4.0, se_ratio: float = 0.0, act_layer: LayerFactory = nn.SiLU,
                 norm_layer: LayerFactory = nn.BatchNorm2d, drop_path_rate: float = 0.0,
                 noskip: bool = False, fused: Optional[bool] = None) -> None:
        super().__init__()
        in_chs, out_chs, k, stride, se_ratio, dpr = _check_common(
            in_chs, out_chs, dw_kernel_size, stride, se_ratio, drop_path_rate)
        exp_ratio = check_positive("exp_ratio", exp_ratio)
        self.has_skip = stride == 1 and in_chs == out_chs and not noskip
        project = exp_ratio != 1.0
        mid_chs = max(1, round(in_chs * exp_ratio)) if project else out_chs
        # groups=1: a dense k×k conv over all input channels (not depthwise) is what makes it "fused".
        self.conv_exp = nn.Conv2d(in_chs, mid_chs, k, stride, padding=k // 2, bias=False)
        self.bn1 = norm_layer(mid_chs)
        self.act1 = act_layer()
        self.se = (SqueezeExcite(mid_chs, rd_channels=se_channels(in_chs, se_ratio), act_layer=act_layer)
                   if se_ratio > 0 else nn.Identity())
        self.conv_pwl = nn.Conv2d(mid_chs, out_chs, 1, bias=False) if project else nn.Identity()
        self.bn2 = norm_layer(out_chs) if project else nn.Identity()
        self.drop_path = _drop_path(self.has_skip, dpr)
        # With SE, bn1 → SiLU → SE is the MBConv middle without its depthwise conv: it runs
        # through the same fused op with a 1×1 identity filter (one multiply per element,
        # inside the op's first pass), so both blocks share one SE kernel path.
        reason = why_not_fusable(self.bn1, self.act1, self.se)
        if fused and reason:
            raise ValueError(f"cannot use the fused dwconv_se middle: {reason}")
        self.fused = not reason if fused is None else bool(fused)
        if self.fused:  # not persistent: the state dict is the same either way
            self.register_buffer("identity_dw", torch.ones(mid_chs, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.fused:
            x = bn_silu_se_fused(self.conv_exp(x), self.identity_dw, 1, self.bn1, self.se)
        else:
            x = self.se(self.act1(self.bn1(self.conv_exp(x))))
        x = self.bn2(self.conv_pwl(x))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return x
