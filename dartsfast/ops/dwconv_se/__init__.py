"""The MBConv middle: depthwise conv → BatchNorm → SiLU → squeeze-excitation.

Exactly (DESIGN.md §2)::

    y = conv2d(x, weight, stride=stride, padding=k//2, groups=C)     # weight [C,1,k,k]
    y = batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps)
    y = silu(y)
    s = y.mean((2, 3))                                                # [N, C]
    s = silu(s @ se_reduce_weight.T + se_reduce_bias)                # [N, Cr]
    s = sigmoid(s @ se_expand_weight.T + se_expand_bias)             # [N, C]
    out = y * s[:, :, None, None]

Registered as the functional op ``torch.ops.dartsfast.dwconv_se`` returning
``(out, batch_mean, batch_var)``; :func:`dwconv_se` applies the running-stat update
from those (autograd cannot be registered for an op that mutates its inputs). The
backward is its own op, ``dwconv_se_backward``, so it too runs the chosen backend.

This module is the op's only link to the backend table: it registers the kernels and
decides what none of them handles (fp64 runs the reference, an empty batch launches
nothing). ``reference.py`` holds the torch reference (its backward written out by hand)
and the argument checks; ``triton_forward.py`` / ``triton_backward.py`` the Triton
kernels and launchers, imported on the first call, with ``_tiles.py`` (shared
``@triton.jit`` helpers) and ``_plan.py`` (tile sizes, grid, layouts) under them.
"""
from __future__ import annotations

from typing import Optional

import torch

from dartsfast import _triton, backend
from dartsfast.ops._common import accumulate_dtype, memory_format_of
from dartsfast.ops.dwconv_se.reference import (
    check_dwconv_se_args,
    dense_se_weights,
    dwconv_se_backward_ref,
    dwconv_se_forward_ref,
    dwconv_se_ref,
    grouped_se_grad,
    output_size,
    se_groups,
)
from dartsfast.ops.running_stats import update_running_stats

__all__ = ["BACKWARD_OP", "OP", "check_dwconv_se_args", "dwconv_se", "dwconv_se_ref", "output_size"]

OP = "dwconv_se"
BACKWARD_OP = "dwconv_se_backward"

backend.register_kernel(OP, "torch")(dwconv_se_forward_ref)
backend.register_kernel(BACKWARD_OP, "torch")(dwconv_se_backward_ref)


# ----------------------------------------------------------------------------- Triton

# Registered whenever triton is installed, without importing it: the kernel modules load
# on the first call, so `import dartsfast` stays free of triton and TRITON_INTERPRET may
# be set any time before that call.

def _dwconv_se_triton(x, weight, bn_weight, bn_bias, running_mean, running_var,
                      se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps):
    args = (x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight, se_reduce_bias,
            se_expand_weight, se_expand_bias, stride, training, eps)
    # fp64 has no kernel (the reference is the fp64 path); an empty batch has no grid to
    # launch (eval with N = 0).
    if x.dtype == torch.float64 or x.numel() == 0:
        return dwconv_se_forward_ref(*args)
    from dartsfast.ops.dwconv_se import triton_forward  # lazy: imports triton, optional and heavy

    return triton_forward.dwconv_se_forward_triton(*args)


def _dwconv_se_backward_triton(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var,
                               se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                               stride, training, eps):
    params = (weight, bn_weight, bn_bias, se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias)
    args = (grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
            se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps)
    if x.numel() == 0:
        # Nothing flows back. (Not the torch kernel: aten.native_batch_norm_backward on an
        # empty CPU batch dies of SIGFPE in torch 2.14.)
        return [torch.zeros_like(x, memory_format=memory_format_of(x))] + [
            torch.zeros_like(p, memory_format=torch.contiguous_format) for p in params]
    if x.dtype == torch.float64:
        return dwconv_se_backward_ref(*args)
    from dartsfast.ops.dwconv_se import triton_backward  # lazy: imports triton, optional and heavy

    return triton_backward.dwconv_se_backward_triton(*args)


if _triton.installed():
    backend.register_kernel(OP, "triton")(_dwconv_se_triton)
    backend.register_kernel(BACKWARD_OP, "triton")(_dwconv_se_backward_triton)


# ----------------------------------------------------------------------------- registration

@torch.library.custom_op("dartsfast::dwconv_se", mutates_args=())
def _dwconv_se_op(x: torch.Tensor, weight: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                  running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
                  se_reduce_weight: torch.Tensor, se_reduce_bias: torch.Tensor,
                  se_expand_weight: torch.Tensor, se_expand_bias: torch.Tensor,
                  stride: int, training: bool, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, kernel = backend.select(OP, x.device)
    # Autocast would otherwise push the reference's conv/linear calls to bf16/fp16 and
    # break the fp32-accumulation promise (and the fp32 stats the fake kernel declares).
    with torch.autocast(x.device.type, enabled=False):
        # Grouped SE weights become block-diagonal here, once for every backend.
        srw, sew = dense_se_weights(se_reduce_weight, se_expand_weight, x.shape[1])
        return kernel(x, weight, bn_weight, bn_bias, running_mean, running_var, srw,
                      se_reduce_bias, sew, se_expand_bias, stride, training, eps)


@_dwconv_se_op.register_fake
def _dwconv_se_fake(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                    se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps):
    n, c, h, w = x.shape
    k = weight.shape[-1]
    out = torch.empty((n, c, output_size(h, k, stride), output_size(w, k, stride)), dtype=x.dtype,
                      device=x.device, memory_format=memory_format_of(x))
    stat = x.new_empty((c,), dtype=accumulate_dtype(x.dtype))
    return out, stat, torch.empty_like(stat)


@torch.library.custom_op("dartsfast::dwconv_se_backward", mutates_args=())
def _dwconv_se_backward_op(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                           bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                           running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
                           se_reduce_weight: torch.Tensor, se_reduce_bias: torch.Tensor,
                           se_expand_weight: torch.Tensor, se_expand_bias: torch.Tensor,
                           stride: int, training: bool, eps: float) -> list[torch.Tensor]:
    _, kernel = backend.select(BACKWARD_OP, x.device)
    with torch.autocast(x.device.type, enabled=False):
        groups = se_groups(se_reduce_weight, x.shape[1])
        srw, sew = dense_se_weights(se_reduce_weight, se_expand_weight, x.shape[1])
        grads = kernel(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var, srw,
                       se_reduce_bias, sew, se_expand_bias, stride, training, eps)
        grads[4], grads[6] = grouped_se_grad(grads[4], groups), grouped_se_grad(grads[6], groups)
        return grads


@_dwconv_se_backward_op.register_fake
def _dwconv_se_backward_fake(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var,
                             se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                             stride, training, eps):
    grads = [torch.empty(x.shape, dtype=x.dtype, device=x.device, memory_format=memory_format_of(x))]
    for param in (weight, bn_weight, bn_bias, se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias):
        grads.append(torch.empty_like(param, memory_format=torch.contiguous_format))
    return grads


def _setup_context(ctx, inputs, output):
    (x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight, se_reduce_bias,
     se_expand_weight, se_expand_bias, stride, training, eps) = inputs
    ctx.stride, ctx.training, ctx.eps = stride, training, eps
    ctx.has_running = running_mean is not None
    running = (running_mean, running_var) if ctx.has_running and not training else ()
    ctx.save_for_backward(x, weight, bn_weight, bn_bias, se_reduce_weight, se_reduce_bias,
                          se_expand_weight, se_expand_bias, *running)
    ctx.mark_non_differentiable(output[1], output[2])
    # The statistics never get a gradient: without this autograd would fill zeros for them
    # (two allocations per backward call, for nothing).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_out, _grad_mean, _grad_var):
    if grad_out is None:  # grads are not materialised: only the statistics were used
        return (None,) * 13
    x, weight, bn_weight, bn_bias, srw, srb, sew, seb, *running = ctx.saved_tensors
    running_mean, running_var = running if running else (None, None)
    d_x, d_w, d_bnw, d_bnb, d_srw, d_srb, d_sew, d_seb = torch.ops.dartsfast.dwconv_se_backward(
        grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var, srw, srb, sew, seb,
        ctx.stride, ctx.training, ctx.eps)
    return d_x, d_w, d_bnw, d_bnb, None, None, d_srw, d_srb, d_sew, d_seb, None, None, None


_dwconv_se_op.register_autograd(_backward, setup_context=_setup_context)


def dwconv_se(x: torch.Tensor, weight: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
              running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
              se_reduce_weight: torch.Tensor, se_reduce_bias: torch.Tensor,
              se_expand_weight: torch.Tensor, se_expand_bias: torch.Tensor,
              *, stride: int = 1, training: bool = True, momentum: float = 0.1,
              eps: float = 1e-5) -> torch.Tensor:
    """Fused depthwise conv + BatchNorm + SiLU + squeeze-excitation (the MBConv middle).

    Args:
        x: [N, C, H, W] activations, fp32/fp16/bf16/fp64 (channels_last is the fast layout
            for the GPU kernels; NCHW is accepted and the output keeps x's layout).
        weight: [C, 1, k, k] depthwise filter, k odd; padding is k//2.
        bn_weight, bn_bias: [C] BatchNorm affine parameters.
        running_mean, running_var: [C] BatchNorm running statistics, updated in place when
            ``training`` (like ``nn.BatchNorm2d``, unbiased variance); None only when training.
        se_reduce_weight, se_reduce_bias: [Cr, C], [Cr] SE reduction (SiLU after it).
        se_expand_weight, se_expand_bias: [C, Cr], [C] SE expansion (sigmoid gate after it).
            G grouped SEs (G independent MLPs side by side, each over C/G channels; a
            grouped 1×1 conv's weights) pass [Cr, C/G] and [C, Cr/G]: the same as the
            block-diagonal dense weights, with gradients of the grouped shapes.
        stride: 1 or 2.  training: batch statistics (True) or running statistics (False).
        momentum, eps: as in ``nn.BatchNorm2d``.
        Parameters may be fp32 or x's dtype (autocast keeps fp32 master weights);
        accumulation is fp32 (fp64 for fp64 x).

    Returns:
        [N, C, H', W'] in x's dtype and memory format, H' = (H - 1)//stride + 1.
    """
    check_dwconv_se_args(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                         se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, momentum, eps)
    out, mean, var = torch.ops.dartsfast.dwconv_se(
        x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight, se_reduce_bias,
        se_expand_weight, se_expand_bias, int(stride), bool(training), float(eps))
    if training and running_mean is not None:
        update_running_stats(running_mean, running_var, mean, var, out.numel() // out.shape[1], momentum)
    return out
