"""The DARTS mixed-op weighted sum ``out = Σ_k weights[k] · inputs[k]``.

Bytes (M elements per input, K inputs, element size b): a fused forward reads K·M·b
and writes M·b; eager ``sum(w * x)`` materialises every product and partial sum, about
5·K·M·b. The backward reads grad + K inputs and writes K input-grads, (2K+1)·M·b, and
produces the K weight-grads from the same reads.

Registered as ``torch.ops.dartsfast.weighted_sum`` (+ ``weighted_sum_backward``) so
``torch.compile`` and ``torch.export`` see one opaque op; the kernel that runs is
chosen at run time by :mod:`dartsfast.backend` (torch reference, Triton, CUDA).
"""
from __future__ import annotations

from typing import Sequence

import torch

from dartsfast import _ext, backend
from dartsfast.ops._common import (
    ACTIVATION_DTYPES,
    accumulate_dtype,
    check_param_dtype,
    check_same_device,
    check_tensor,
    memory_format_of,
    new_output,
)

OP = "weighted_sum"
BACKWARD_OP = "weighted_sum_backward"


def _as_input_list(inputs: object) -> list[torch.Tensor]:
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


# ----------------------------------------------------------------------------- torch reference

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


backend.register_kernel(OP, "torch")(weighted_sum_ref)
backend.register_kernel(BACKWARD_OP, "torch")(weighted_sum_backward_ref)


# ----------------------------------------------------------------------------- CUDA extension

def _weighted_sum_cuda(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Forward through the CUDA extension (fp32/fp16/bf16; fp64 stays on the reference)."""
    x0 = inputs[0]
    if x0.dtype == torch.float64:
        return weighted_sum_ref(inputs, weights)
    layout = memory_format_of(x0)
    out = new_output(x0.shape, x0.dtype, x0.device, layout)
    # The kernel treats every input as a flat buffer laid out exactly like `out`; an input
    # with other strides (or a non-dense view) is made dense once here, never mis-indexed.
    dense = [x if x.stride() == out.stride() else x.clone(memory_format=layout) for x in inputs]
    torch.ops.dartsfast.weighted_sum_cuda(dense, weights.to(torch.float32).contiguous(), out)
    return out


if _ext.HAS_EXT and _ext.has_op("weighted_sum_cuda"):
    backend.register_kernel(OP, "cuda")(_weighted_sum_cuda)


# ----------------------------------------------------------------------------- Triton

# Kernels and launchers live in weighted_sum_triton.py; without triton it sets
# HAS_TRITON=False and 'triton' falls back to the reference. The CUDA extension has no
# backward, so under 'auto' on CUDA the backward runs this Triton one.
from dartsfast.ops.weighted_sum import triton as _triton  # noqa: E402

if _triton.HAS_TRITON:
    backend.register_kernel(OP, "triton")(_triton.weighted_sum_triton)
    backend.register_kernel(BACKWARD_OP, "triton")(_triton.weighted_sum_backward_triton)


# ----------------------------------------------------------------------------- registration

@torch.library.custom_op("dartsfast::weighted_sum", mutates_args=())
def _weighted_sum_op(inputs: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    check_weighted_sum_args(inputs, weights)
    _, kernel = backend.select(OP, inputs[0].device)
    return kernel(inputs, weights)


@_weighted_sum_op.register_fake
def _weighted_sum_fake(inputs, weights):
    check_weighted_sum_args(inputs, weights)
    x0 = inputs[0]
    return torch.empty(x0.shape, dtype=x0.dtype, device=x0.device, memory_format=memory_format_of(x0))


@torch.library.custom_op("dartsfast::weighted_sum_backward", mutates_args=())
def _weighted_sum_backward_op(grad: torch.Tensor, inputs: list[torch.Tensor],
                              weights: torch.Tensor) -> list[torch.Tensor]:
    _, kernel = backend.select(BACKWARD_OP, grad.device)
    return kernel(grad, inputs, weights)


@_weighted_sum_backward_op.register_fake
def _weighted_sum_backward_fake(grad, inputs, weights):
    grads = [torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))
             for x in inputs]
    return grads + [torch.empty_like(weights, memory_format=torch.contiguous_format)]


def _setup_context(ctx, inputs, output):
    xs, weights = inputs
    ctx.save_for_backward(weights, *xs)


def _backward(ctx, grad):
    weights, *xs = ctx.saved_tensors
    grads = torch.ops.dartsfast.weighted_sum_backward(grad, xs, weights)
    return list(grads[:-1]), grads[-1]


_weighted_sum_op.register_autograd(_backward, setup_context=_setup_context)


def weighted_sum(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """``Σ_k weights[k] · inputs[k]``, differentiable in every input and in ``weights``.

    Args:
        inputs: K ≥ 1 tensors of one shape, dtype (fp32, fp16, bf16, fp64) and device.
        weights: 1-D tensor of length K (already normalised, e.g. softmaxed alphas),
            fp32 or the inputs' dtype, on the inputs' device.

    Returns:
        A tensor shaped like ``inputs[0]`` in its dtype and memory format
        (channels_last stays channels_last); accumulation is fp32 (fp64 for fp64).
    """
    inputs = _as_input_list(inputs)
    check_weighted_sum_args(inputs, weights)
    return torch.ops.dartsfast.weighted_sum(inputs, weights)
