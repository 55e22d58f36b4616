"""weighted_sum's torch reference (forward and backward) and its argument checks.

The reference is the CPU production path, the fp64 path of every backend and the
tests' oracle; the checks run before any kernel is chosen.
"""
from __future__ import annotations

from typing import Sequence

import torch

from dartsfast.ops._common import (
    ACTIVATION_DTYPES,
    accumulate_dtype,
    check_param_dtype,
    check_same_device,
    check_tensor,
    memory_format_of,
)


def as_input_list(inputs: object) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        raise TypeError("inputs must be a sequence of K tensors, got a single tensor "
                        "(for a stacked [K, ...] tensor pass list(t.unbind(0)))")
    if not isinstance(inputs, (list, tuple)):
        raise TypeError(f"inputs must be a list or tuple of tensors, got {type(inputs).__name__}")
    return list(inputs)


def check_weighted_sum_args(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> None:
    """Raise a ValueError/TypeError naming the bad argument; return quietly otherwise."""
    if len(inputs) == 0:
        raise ValueError("weighted_sum needs at least one input (got K=0)")
    first = check_tensor("inputs[0]", inputs[0], dtypes=ACTIVATION_DTYPES)
    for k, x in enumerate(inputs[1:], start=1):
        check_tensor(f"inputs[{k}]", x)
        if x.shape != first.shape:
            raise ValueError(f"inputs[{k}] has shape {tuple(x.shape)} but inputs[0] has {tuple(first.shape)}")
        if x.dtype != first.dtype:
            raise TypeError(f"inputs[{k}] has dtype {x.dtype} but inputs[0] has {first.dtype}")
        check_same_device(f"inputs[{k}]", x, "inputs[0]", first)
    check_tensor("weights", weights, dims=1)
    check_param_dtype("weights", weights, first.dtype)
    if weights.shape[0] != len(inputs):
        raise ValueError(f"weights has length {weights.shape[0]} but there are {len(inputs)} inputs")
    check_same_device("weights", weights, "inputs[0]", first)


def weighted_sum_ref(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Torch reference (CPU production path and test oracle), differentiable by autograd.

    Accumulates in fp32 (fp64 for fp64 inputs) and rounds once to the input dtype.
    """
    x0 = inputs[0]
    acc_dtype = accumulate_dtype(x0.dtype)
    w = weights.to(acc_dtype)
    acc = inputs[0].to(acc_dtype) * w[0]
    for k in range(1, len(inputs)):
        acc = acc + inputs[k].to(acc_dtype) * w[k]  # w[k] stays on the device: no host sync
    return acc.to(x0.dtype).contiguous(memory_format=memory_format_of(x0))


def weighted_sum_backward_ref(grad: torch.Tensor, inputs: Sequence[torch.Tensor],
                              weights: torch.Tensor) -> list[torch.Tensor]:
    """``[grad_inputs[0..K-1]..., grad_weights]``: grad_k = w_k·grad, grad_w[k] = Σ grad·x_k."""
    acc_dtype = accumulate_dtype(inputs[0].dtype)
    g = grad.to(acc_dtype)
    w = weights.to(acc_dtype)
    grad_inputs = [(g * w[k]).to(x.dtype).contiguous(memory_format=memory_format_of(x))
                   for k, x in enumerate(inputs)]
    grad_weights = torch.stack([(g * x.to(acc_dtype)).sum() for x in inputs]).to(weights.dtype)
    return grad_inputs + [grad_weights]
