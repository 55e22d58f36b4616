"""The DARTS mixed-op weighted sum ``out = Σ_k weights[k] · inputs[k]``.

Bytes (M elements per input, K inputs, element size b): a fused forward reads K·M·b
and writes M·b; eager ``sum(w * x)`` materialises every product and partial sum, about
5·K·M·b. The backward reads grad + K inputs and writes K input-grads, (2K+1)·M·b, and
produces the K weight-grads from the same reads.

Registered as ``torch.ops.dartsfast.weighted_sum`` (+ ``weighted_sum_backward``) so
``torch.compile`` and ``torch.export`` see one opaque op; the kernel that runs is
chosen at run time by :mod:`dartsfast.backend` (torch reference, Triton, CUDA).

This module is the op's only link to the backend table: it registers the kernels and
decides what none of them handles (fp64 runs the reference, an empty input launches
nothing). ``reference.py`` holds the torch reference and the argument checks,
``triton.py`` the Triton kernels and their launchers (imported on the first call).
"""
from __future__ import annotations

from typing import Sequence

import torch

from dartsfast import _ext, _triton, backend
from dartsfast.ops._common import memory_format_of, new_output
from dartsfast.ops.weighted_sum.reference import (
    as_input_list,
    check_weighted_sum_args,
    weighted_sum_backward_ref,
    weighted_sum_ref,
)

__all__ = ["BACKWARD_OP", "OP", "check_weighted_sum_args", "weighted_sum", "weighted_sum_backward_ref",
           "weighted_sum_ref"]

OP = "weighted_sum"
BACKWARD_OP = "weighted_sum_backward"

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

# Registered whenever triton is installed, without importing it: the kernel module loads
# on the first call, so `import dartsfast` stays free of triton and TRITON_INTERPRET may
# be set any time before that call. The CUDA extension has no backward, so under 'auto'
# on CUDA the backward runs this Triton one.

def _weighted_sum_triton(inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    x0 = inputs[0]
    if x0.dtype == torch.float64:  # no fp64 kernel: the reference is the fp64 path
        return weighted_sum_ref(inputs, weights)
    if x0.numel() == 0:  # nothing to launch
        return new_output(x0.shape, x0.dtype, x0.device, memory_format_of(x0))
    from dartsfast.ops.weighted_sum import triton as kernels  # lazy: imports triton, optional and heavy

    return kernels.weighted_sum_triton(inputs, weights)


def _weighted_sum_backward_triton(grad: torch.Tensor, inputs: Sequence[torch.Tensor],
                                  weights: torch.Tensor) -> list[torch.Tensor]:
    x0 = inputs[0]
    if x0.dtype == torch.float64:
        return weighted_sum_backward_ref(grad, inputs, weights)
    if x0.numel() == 0:
        grads = [new_output(x0.shape, x0.dtype, x0.device, memory_format_of(x0)) for _ in inputs]
        return grads + [torch.zeros_like(weights, memory_format=torch.contiguous_format)]
    from dartsfast.ops.weighted_sum import triton as kernels  # lazy: imports triton, optional and heavy

    return kernels.weighted_sum_backward_triton(grad, inputs, weights)


if _triton.installed():
    backend.register_kernel(OP, "triton")(_weighted_sum_triton)
    backend.register_kernel(BACKWARD_OP, "triton")(_weighted_sum_backward_triton)


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
    inputs = as_input_list(inputs)
    check_weighted_sum_args(inputs, weights)
    return torch.ops.dartsfast.weighted_sum(inputs, weights)
