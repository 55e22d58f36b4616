"""E copies of one block that read the same input, computed as one wide block.

In a DARTS cell every state feeds 1–4 edges, and each edge runs the same candidate
blocks with its own weights. Run edge by edge, that is 14 small evaluations per cell per
candidate; widened, it is one per state (5 per cell), each over E× the channels:

- the block's first conv reads the shared input once: a dense conv C → E·C_out with the
  E filters stacked (a depthwise first conv, as in DSConv, reads E copies of the input);
- every later conv is grouped by edge (groups × E), so edge e only sees its own channels;
- BatchNorm is per channel, so one BN over E·C channels is E separate BNs;
- a squeeze-excitation's two 1×1 convs are grouped the same way (E independent SEs).

Edge e's output is channels [e·C_out, (e+1)·C_out) of the wide output. Parameters are the
E blocks' parameters concatenated along dim 0, so the wide block computes exactly what
the E blocks do (up to float summation order) and trains to the same values.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn as nn
from torch.nn.utils import skip_init

from dartsfast.nn.blocks import DSConv, FusedMBConv, MBConv
from dartsfast.ops._common import memory_format_of

__all__ = ["RepeatedInputConv2d", "can_widen", "widen"]

# The attribute holding each block's first conv (the only one that reads the block input).
_INPUT_CONV = {DSConv: "conv_dw", MBConv: "conv_pw", FusedMBConv: "conv_exp"}


class RepeatedInputConv2d(nn.Conv2d):
    """A depthwise conv over ``copies`` side-by-side copies of its input's channels."""

    def __init__(self, copies: int, *args, device=None, dtype=None, **kwargs) -> None:
        super().__init__(*args, device=device, dtype=dtype, **kwargs)
        self.copies = copies

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # repeat() returns NCHW whatever x is: keep an NHWC input NHWC (the conv's fast layout).
        return super().forward(x.repeat(1, self.copies, 1, 1).contiguous(memory_format=memory_format_of(x)))


def can_widen(block: nn.Module) -> bool:
    """True for DSConv, MBConv and FusedMBConv without a residual (the search's candidates:
    a residual would add the C-channel input to an E·C-channel output)."""
    return type(block) in _INPUT_CONV and not block.has_skip


def _cat(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.detach() for t in tensors], 0)


def _wide_conv(convs: Sequence[nn.Conv2d], reads_input: bool) -> nn.Conv2d:
    c, e = convs[0], len(convs)
    depthwise = c.groups == c.in_channels == c.out_channels and c.groups > 1
    # skip_init: the weights are copied in below, and drawing an unused initialisation
    # would move the global RNG (the cells built after this one would differ).
    kwargs = dict(kernel_size=c.kernel_size, stride=c.stride, padding=c.padding, dilation=c.dilation,
                  bias=c.bias is not None, padding_mode=c.padding_mode, device=c.weight.device,
                  dtype=c.weight.dtype)
    if reads_input and depthwise:
        return skip_init(RepeatedInputConv2d, e, e * c.in_channels, e * c.out_channels, groups=e * c.groups,
                         **kwargs)
    if reads_input:
        if c.groups != 1:
            raise TypeError(f"cannot widen a grouped first conv (groups={c.groups})")
        return skip_init(nn.Conv2d, c.in_channels, e * c.out_channels, groups=1, **kwargs)
    return skip_init(nn.Conv2d, e * c.in_channels, e * c.out_channels, groups=e * c.groups, **kwargs)


def _wide_bn(bns: Sequence[nn.BatchNorm2d]) -> nn.BatchNorm2d:
    b = bns[0]
    ref = next(iter(b.parameters()), b.running_mean)
    return nn.BatchNorm2d(len(bns) * b.num_features, eps=b.eps, momentum=b.momentum, affine=b.affine,
                          track_running_stats=b.track_running_stats, device=ref.device, dtype=ref.dtype)


def widen(blocks: Sequence[nn.Module]) -> nn.Module:
    """One block computing ``blocks`` side by side on a shared input (see the module docstring).

    All blocks must be of one widenable type (:func:`can_widen`) and configuration. The
    result maps [N, C, H, W] → [N, E·C_out, H', W'] and holds copies of the blocks'
    parameters and buffers (the blocks themselves are not modified).
    """
    blocks = list(blocks)
    if not blocks:
        raise ValueError("widen needs at least one block")
    first = blocks[0]
    if not can_widen(first):
        raise TypeError(f"cannot widen {type(first).__name__} (DSConv, MBConv and FusedMBConv without a residual)")
    names = [n for n, _ in first.named_modules()]
    for b in blocks[1:]:
        if type(b) is not type(first) or [n for n, _ in b.named_modules()] != names:
            raise TypeError("widen needs blocks of one type and structure")
    wide = copy.deepcopy(first)
    input_conv = _INPUT_CONV[type(first)]
    parts = [dict(b.named_modules()) for b in blocks]
    for name, module in list(wide.named_modules()):
        same = [p[name] for p in parts]
        if isinstance(module, nn.Conv2d):
            replacement = _wide_conv(same, reads_input=name == input_conv)
        elif isinstance(module, nn.BatchNorm2d):
            replacement = _wide_bn(same)
        else:
            replacement = module
        with torch.no_grad():
            for key, _ in same[0].named_parameters(recurse=False):
                getattr(replacement, key).copy_(_cat([getattr(m, key) for m in same]))
            for key, buf in same[0].named_buffers(recurse=False):
                if key == "num_batches_tracked":  # one counter per BN, the same in every edge's copy
                    getattr(replacement, key).copy_(buf)
                elif replacement is module:  # a block-level buffer (FusedMBConv's identity filter)
                    persistent = key not in module._non_persistent_buffers_set
                    module.register_buffer(key, _cat([getattr(m, key) for m in same]), persistent=persistent)
                else:
                    getattr(replacement, key).copy_(_cat([getattr(m, key) for m in same]))
        if replacement is not module:
            parent_name, _, attr = name.rpartition(".")
            setattr(wide.get_submodule(parent_name) if parent_name else wide, attr, replacement)
    return wide
