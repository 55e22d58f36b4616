"""Small layers the blocks are built from (DropPath, SqueezeExcite). Plain PyTorch: the
fused kernels live in :mod:`dartsfast.ops`; the argument checks in :mod:`dartsfast._validate`."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn

from dartsfast._validate import check_channels, check_positive, check_probability

LayerFactory = Callable[..., nn.Module]


def se_channels(in_chs: int, se_ratio: float) -> int:
    """SE bottleneck width: ``round(in_chs * se_ratio)``, at least 1 (EfficientNet sizes it
    from the *block input* channels, not the expanded ones)."""
    return max(1, round(in_chs * se_ratio))


# ----------------------------------------------------------------------------- layers

class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016), for the residual branch of a block.

    Training: each sample's branch is zeroed with probability ``drop_prob`` and the
    survivors are scaled by ``1 / (1 - drop_prob)`` so the expected output is unchanged.
    Eval, or ``drop_prob == 0``: identity.

    Args:
        drop_prob: probability of dropping a sample's branch, in [0, 1).

    Shape: any [N, ...] → same shape, dtype and memory format.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = check_probability("drop_prob", drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        # One Bernoulli draw per sample, broadcast over C, H, W; multiplying keeps x's layout.
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): ``x * gate(expand(act(reduce(mean_hw(x)))))``.

    Args:
        in_chs: channels C of the input.
        rd_ratio: bottleneck width as a fraction of ``in_chs`` (used when ``rd_channels`` is None);
            width = max(1, round(in_chs * rd_ratio)).
        rd_channels: bottleneck width Cr, overriding ``rd_ratio``.
        act_layer: activation after ``conv_reduce`` (SiLU in EfficientNet).
        gate_layer: gate after ``conv_expand`` (sigmoid).
        groups: G independent SEs side by side, each over C/G channels with a Cr/G
            bottleneck (grouped 1x1 convs; the edges of a batched supernet state).

    Parameters: ``conv_reduce`` 1x1 conv C→Cr with bias, ``conv_expand`` 1x1 conv Cr→C with bias.
    Shape: [N, C, H, W] → [N, C, H, W], same dtype and memory format.
    """

    def __init__(self, in_chs: int, rd_ratio: float = 0.25, rd_channels: Optional[int] = None,
                 act_layer: LayerFactory = nn.SiLU, gate_layer: LayerFactory = nn.Sigmoid,
                 groups: int = 1) -> None:
        super().__init__()
        check_channels("in_chs", in_chs)
        if rd_channels is None:
            rd_channels = max(1, round(in_chs * check_positive("rd_ratio", rd_ratio)))
        check_channels("rd_channels", rd_channels)
        check_channels("groups", groups)
        if in_chs % groups or rd_channels % groups:
            raise ValueError(f"groups={groups} must divide in_chs={in_chs} and rd_channels={rd_channels}")
        self.conv_reduce = nn.Conv2d(in_chs, rd_channels, 1, bias=True, groups=groups)
        self.act1 = act_layer()
        self.conv_expand = nn.Conv2d(rd_channels, in_chs, 1, bias=True, groups=groups)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)                      # [N, C, 1, 1]
        s = self.conv_expand(self.act1(self.conv_reduce(s)))
        return x * self.gate(s)
