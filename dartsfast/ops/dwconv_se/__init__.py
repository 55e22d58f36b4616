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
backward, ``dwconv_se_backward``, is written out by hand below: it recomputes the
cheap conv output instead of saving it, so only the inputs stay alive for backward.
"""
from __future__ import annotations

import importlib.util
from typing import Optional

import torch
import torch.nn.functional as F

from dartsfast import backend
from dartsfast.ops._common import (
    ACTIVATION_DTYPES,
    accumulate_dtype,
    check_param_dtype,
    check_same_device,
    check_shape,
    check_tensor,
    memory_format_of,
)

OP = "dwconv_se"
BACKWARD_OP = "dwconv_se_backward"

# Parameter names in call order; the backward returns one gradient per entry.
_PARAM_NAMES = ("weight", "bn_weight", "bn_bias", "se_reduce_weight", "se_reduce_bias",
                "se_expand_weight", "se_expand_bias")


def output_size(size: int, kernel_size: int, stride: int) -> int:
    """Spatial output size of the depthwise conv with padding k//2."""
    return (size + 2 * (kernel_size // 2) - kernel_size) // stride + 1


def check_dwconv_se_args(x, weight, bn_weight, bn_bias, running_mean, running_var,
                         se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                         stride, training, momentum, eps) -> None:
    """Raise a ValueError/TypeError naming the bad argument; return quietly otherwise."""
    check_tensor("x", x, dims=4, dtypes=ACTIVATION_DTYPES)
    n, c, h, w = x.shape
    check_tensor("weight", weight, dims=4)
    k = weight.shape[-1]
    if tuple(weight.shape[:2]) != (c, 1) or weight.shape[2] != k:
        raise ValueError(f"weight must be a depthwise filter of shape ({c}, 1, k, k) for C={c}, "
                         f"got {tuple(weight.shape)}")
    if k % 2 == 0:
        raise ValueError(f"weight has even kernel size {k}; 'same' padding k//2 needs an odd kernel (3, 5, ...)")
    if isinstance(stride, bool) or stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    se_reduce_weight = check_tensor("se_reduce_weight", se_reduce_weight, dims=2)
    cr = se_reduce_weight.shape[0]
    expected = {"bn_weight": (c,), "bn_bias": (c,), "se_reduce_weight": (cr, c), "se_reduce_bias": (cr,),
                "se_expand_weight": (c, cr), "se_expand_bias": (c,)}
    given = {"bn_weight": bn_weight, "bn_bias": bn_bias, "se_reduce_weight": se_reduce_weight,
             "se_reduce_bias": se_reduce_bias, "se_expand_weight": se_expand_weight,
             "se_expand_bias": se_expand_bias}
    for name, t in given.items():
        check_tensor(name, t)
        check_shape(name, t, expected[name])
    given["weight"] = weight
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is None:
            if not training:
                raise ValueError(f"{name} is None; eval mode (training=False) normalises with running statistics")
            continue
        check_tensor(name, t)
        check_shape(name, t, (c,))
        given[name] = t
    for name, t in given.items():
        check_param_dtype(name, t, x.dtype)
        check_same_device(name, t, "x", x)
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be tensors or both be None")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not float(eps) > 0.0:
        raise ValueError(f"eps must be positive, got {eps}")
    values = n * output_size(h, k, stride) * output_size(w, k, stride)
    if training and values < 2:
        raise ValueError(f"training-mode BatchNorm needs more than one value per channel; "
                         f"x of shape {tuple(x.shape)} gives {values}")


# ----------------------------------------------------------------------------- torch reference

def _forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var,
                   se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                   stride, training, eps, differentiable=True):
    """Every intermediate of the forward, in the accumulation dtype (fp32, fp64 for fp64).

    ``differentiable=False`` (the op's own kernels, which never record autograd) normalises
    with one native BatchNorm kernel instead of four elementwise passes (with the native
    BN/SiLU backward, MBConv(8, 8) fwd+bwd at 64x8x16x16 on 2 CPU cores went from 33 to
    22 ms; the plain module composition takes 9.5 ms), but autograd would not see the
    batch statistics' dependence on z through it.
    """
    acc = accumulate_dtype(x.dtype)
    k = weight.shape[-1]
    z = F.conv2d(x.to(acc), weight.to(acc), stride=stride, padding=k // 2, groups=x.shape[1])
    if training:
        var, mean = torch.var_mean(z, (0, 2, 3), unbiased=False)
    else:
        mean, var = running_mean.to(acc), running_var.to(acc)
    inv_std = torch.rsqrt(var + eps)
    if differentiable:
        z_hat = (z - mean[:, None, None]) * inv_std[:, None, None]
        a = z_hat * bn_weight.to(acc)[:, None, None] + bn_bias.to(acc)[:, None, None]
    else:
        a = F.batch_norm(z, mean, var, bn_weight.to(acc), bn_bias.to(acc), training=False, eps=eps)
    y = F.silu(a)
    pooled = y.mean((2, 3))                                                  # [N, C]
    h = F.linear(pooled, se_reduce_weight.to(acc), se_reduce_bias.to(acc))   # [N, Cr]
    h_act = F.silu(h)
    gate = torch.sigmoid(F.linear(h_act, se_expand_weight.to(acc), se_expand_bias.to(acc)))  # [N, C]
    out = y * gate[:, :, None, None]
    return dict(z=z, mean=mean, var=var, inv_std=inv_std, a=a, y=y, pooled=pooled,
                h=h, h_act=h_act, gate=gate, out=out)


def _dwconv_se_forward_ref(x, weight, bn_weight, bn_bias, running_mean, running_var,
                           se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                           stride, training, eps):
    parts = _forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                           se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps,
                           differentiable=False)
    out = parts["out"].to(x.dtype).contiguous(memory_format=memory_format_of(x))
    return out, parts["mean"].clone(), parts["var"].clone()


def _silu_grad(t: torch.Tensor) -> torch.Tensor:
    sig = torch.sigmoid(t)
    return sig * (1 + t * (1 - sig))


def _dwconv_se_backward_ref(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var,
                            se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                            stride, training, eps):
    """Hand-written backward of the composition; returns grads of x and the 7 parameters."""
    params = (weight, bn_weight, bn_bias, se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias)
    if x.numel() == 0:  # aten's native_batch_norm_backward dies with SIGFPE on an empty batch
        return [torch.zeros_like(x)] + [torch.zeros_like(t, memory_format=torch.contiguous_format)
                                        for t in params]
    p = _forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                       se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps,
                       differentiable=False)
    acc = p["z"].dtype
    g = grad_out.to(acc)
    gate, y = p["gate"], p["y"]
    hw = y.shape[2] * y.shape[3]
    # out = y * gate
    d_gate = (g * y).sum((2, 3))                                   # [N, C]
    d_e = d_gate * gate * (1 - gate)                               # through sigmoid
    d_se_expand_weight = d_e.t() @ p["h_act"]                      # [C, Cr]
    d_se_expand_bias = d_e.sum(0)
    d_h = (d_e @ se_expand_weight.to(acc)) * _silu_grad(p["h"])    # [N, Cr]
    d_se_reduce_weight = d_h.t() @ p["pooled"]                     # [Cr, C]
    d_se_reduce_bias = d_h.sum(0)
    d_pooled = d_h @ se_reduce_weight.to(acc)                      # [N, C]
    d_y = g * gate[:, :, None, None] + (d_pooled / hw)[:, :, None, None]
    d_a = torch.ops.aten.silu_backward(d_y, p["a"])
    # Native BatchNorm backward: in training it includes the two batch-statistics terms.
    running = (None, None) if training else (running_mean.to(acc), running_var.to(acc))
    d_z, d_bn_weight, d_bn_bias = torch.ops.aten.native_batch_norm_backward(
        d_a, p["z"], bn_weight.to(acc), *running, p["mean"], p["inv_std"], training, eps, [True, True, True])
    k = weight.shape[-1]
    d_x, d_weight, _ = torch.ops.aten.convolution_backward(
        d_z, x.to(acc), weight.to(acc), None, [stride, stride], [k // 2, k // 2], [1, 1],
        False, [0, 0], x.shape[1], [True, True, False])
    grads = [d_x.to(x.dtype).contiguous(memory_format=memory_format_of(x))]
    for grad, param in zip((d_weight, d_bn_weight, d_bn_bias, d_se_reduce_weight, d_se_reduce_bias,
                            d_se_expand_weight, d_se_expand_bias), params):
        grads.append(grad.to(param.dtype).contiguous())
    return grads


backend.register_kernel(OP, "torch")(_dwconv_se_forward_ref)
backend.register_kernel(BACKWARD_OP, "torch")(_dwconv_se_backward_ref)

# Triton kernels (dwconv_se_triton*.py), imported on first call: `import dartsfast` must
# work without triton and must not import it before a caller sets TRITON_INTERPRET.
if importlib.util.find_spec("triton") is not None:
    def _dwconv_se_triton(*args):
        from dartsfast.ops.dwconv_se.triton_forward import dwconv_se_forward_triton
        return dwconv_se_forward_triton(*args)

    def _dwconv_se_backward_triton(*args):
        from dartsfast.ops.dwconv_se.triton_backward import dwconv_se_backward_triton
        return dwconv_se_backward_triton(*args)

    backend.register_kernel(OP, "triton")(_dwconv_se_triton)
    backend.register_kernel(BACKWARD_OP, "triton")(_dwconv_se_backward_triton)


def dwconv_se_ref(x, weight, bn_weight, bn_bias, running_mean, running_var,
                  se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                  *, stride=1, training=True, momentum=0.1, eps=1e-5) -> torch.Tensor:
    """Torch reference, differentiable by autograd; updates running stats in training mode."""
    parts = _forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                           se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps)
    if training and running_mean is not None:
        _update_running_stats(running_mean, running_var, parts["mean"], parts["var"],
                              parts["z"].numel() // parts["z"].shape[1], momentum)
    return parts["out"].to(x.dtype).contiguous(memory_format=memory_format_of(x))


def _update_running_stats(running_mean, running_var, mean, biased_var, count: int, momentum: float):
    """``nn.BatchNorm2d``'s update: running ← (1−m)·running + m·batch, with unbiased variance."""
    with torch.no_grad():
        unbiased = biased_var.detach() * (count / (count - 1))
        running_mean.mul_(1 - momentum).add_(mean.detach().to(running_mean.dtype) * momentum)
        running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype) * momentum)


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
        return kernel(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                      se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps)


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
        return kernel(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                      se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps)


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


def _backward(ctx, grad_out, _grad_mean, _grad_var):
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
        _update_running_stats(running_mean, running_var, mean, var, out.numel() // out.shape[1], momentum)
    return out
