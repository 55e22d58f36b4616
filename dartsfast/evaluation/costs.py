"""What a network costs: parameters, multiply-adds of one forward, and measured latency.

Multiply-adds (MACs) are counted by forward hooks on every ``nn.Conv2d`` and ``nn.Linear``
during one eval-mode forward of a single image: a convolution costs
``output elements x (in_channels / groups) x kernel height x kernel width``, a linear layer
``output elements x in_features``; biases, BatchNorm, activations, pooling, the SE gate's
product and the node sums are not multiply-adds of a weight and are left out (the usual
convention of "FLOPs" in NAS papers, which count MACs). Hooks rather than
``torch.utils.flop_counter.FlopCounterMode`` because the count then depends on the modules
alone, not on which aten ops a torch version dispatches; the tests check that the two agree
(FlopCounterMode's FLOPs = 2 x MACs) on torch 2.11 and 2.14.

The MBConv middle may run as the fused custom op ``dartsfast::dwconv_se``, which no hook
(and no FlopCounterMode formula) sees; the count runs on a copy of the network in which
each fused middle is replaced by its plain composition (:class:`~dartsfast.nn.blocks.DepthwiseSE`,
the same submodules and the same result).
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
import torch.nn as nn

from dartsfast.nn.blocks import DepthwiseSE, FusedDepthwiseSE
from dartsfast.timing import TimingStats, time_fn


def count_parameters(model: nn.Module) -> int:
    """Elements of all of ``model``'s parameters (trainable or not), each tensor once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


def unfused_copy(model: nn.Module) -> nn.Module:
    """A CPU float32 copy of ``model`` with every fused MBConv middle in its plain form."""
    clone = copy.deepcopy(model).to("cpu", torch.float32)
    for parent in list(clone.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, FusedDepthwiseSE):
                setattr(parent, name, DepthwiseSE(child.conv_dw, child.bn2, child.act2, child.se))
    return clone


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_multiply_adds(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of ``model``'s conv and linear layers in one eval-mode forward of a
    zero input of ``input_shape`` (e.g. [1, C, H, W]); ``model`` itself is not changed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    shape = tuple(input_shape)
    if len(shape) < 2 or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(f"input_shape must be positive ints such as (1, C, H, W), got {input_shape!r}")
    clone = unfused_copy(model).eval()
    total = [0]
    counters = {nn.Conv2d: _conv_macs, nn.Linear: _linear_macs}

    def hook(module, _inputs, output):
        total[0] += counters[type(module)](module, output)

    # type(m) in counters, not isinstance: a subclass may compute something else in forward.
    handles = [m.register_forward_hook(hook) for m in clone.modules() if type(m) in counters]
    try:
        with torch.inference_mode():
            clone(torch.zeros(shape))
    finally:
        for h in handles:
            h.remove()
    return total[0]


def measure_latency(model: nn.Module, input_shape: Sequence[int], device: torch.device, *,
                    warmup: int = 5, repeats: int = 30, min_time_s: float = 0.5,
                    channels_last: bool = False) -> TimingStats:
    """Per-forward time of ``model`` in eval and inference mode on ``device``, by the project's
    timer (:func:`dartsfast.timing.time_fn`: CUDA events on a GPU, perf_counter on a CPU)."""
    model = model.to(device).eval()
    x = torch.randn(tuple(input_shape), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    return time_fn(forward, warmup=warmup, repeats=repeats, min_time_s=min_time_s, device=device)


def latency_record(stats: Optional[TimingStats], batch: int, device: torch.device) -> Optional[dict]:
    """The JSON form of a latency measurement, in milliseconds (None stays None)."""
    if stats is None:
        return None
    return {"median_ms": 1e3 * stats.median, "q25_ms": 1e3 * stats.q25, "q75_ms": 1e3 * stats.q75,
            "calls": stats.n, "batch": batch, "device": str(device)}
