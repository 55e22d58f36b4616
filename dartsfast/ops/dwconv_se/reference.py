"""dwconv_se's torch reference (forward, hand-written backward, running-stat update) and
its argument checks.

The reference is the CPU production path, the fp64 path of every backend and the tests'
oracle; the checks run before any kernel is chosen. The backward recomputes the cheap
conv output instead of saving it, so only the op's inputs stay alive for backward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dartsfast.ops._common import (
    ACTIVATION_DTYPES,
    accumulate_dtype,
    check_param_dtype,
    check_same_device,
    check_shape,
    check_tensor,
    memory_format_of,
)
from dartsfast.ops.running_stats.reference import update_running_stats_ref


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
    cr, per_group = se_reduce_weight.shape
    if per_group == 0 or c % per_group or cr % (c // per_group):
        raise ValueError(f"se_reduce_weight must be [Cr, C] or, for G grouped SEs, [Cr, C/G] with G dividing "
                         f"C={c} and Cr; got {tuple(se_reduce_weight.shape)}")
    groups = c // per_group
    expected = {"bn_weight": (c,), "bn_bias": (c,), "se_reduce_weight": (cr, per_group), "se_reduce_bias": (cr,),
                "se_expand_weight": (c, cr // groups), "se_expand_bias": (c,)}
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


def se_groups(se_reduce_weight: torch.Tensor, channels: int) -> int:
    """G of a grouped SE: its reduce weight is [Cr, C/G] (G = 1: the plain [Cr, C])."""
    return channels // se_reduce_weight.shape[1]


def dense_se_weights(se_reduce_weight: torch.Tensor, se_expand_weight: torch.Tensor,
                     channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The SE weights as dense [Cr, C] and [C, Cr] matrices: block-diagonal for G grouped
    SEs (G side by side, each over C/G channels: the edges of a batched supernet state),
    so every kernel computes the plain MLP. Differentiable."""
    g = se_groups(se_reduce_weight, channels)
    if g == 1:
        return se_reduce_weight, se_expand_weight
    return (torch.block_diag(*se_reduce_weight.chunk(g, 0)), torch.block_diag(*se_expand_weight.chunk(g, 0)))


def grouped_se_grad(grad: torch.Tensor, groups: int) -> torch.Tensor:
    """The diagonal blocks of a dense SE weight's gradient, stacked: the grouped weight's
    gradient ([Cr, C] → [Cr, C/G]; the off-diagonal entries belong to no parameter)."""
    if groups == 1:
        return grad
    rows, cols = grad.shape[0] // groups, grad.shape[1] // groups
    blocks = grad.reshape(groups, rows, groups, cols).diagonal(dim1=0, dim2=2)   # [rows, cols, G]
    return blocks.permute(2, 0, 1).reshape(groups * rows, cols)


def forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var,
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


def dwconv_se_forward_ref(x, weight, bn_weight, bn_bias, running_mean, running_var,
                          se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                          stride, training, eps):
    parts = forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                          se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps,
                          differentiable=False)
    out = parts["out"].to(x.dtype).contiguous(memory_format=memory_format_of(x))
    return out, parts["mean"].clone(), parts["var"].clone()


def silu_grad(t: torch.Tensor) -> torch.Tensor:
    """d silu(t) / dt (the Triton backward's SE algebra on [N, Cr] uses it too)."""
    sig = torch.sigmoid(t)
    return sig * (1 + t * (1 - sig))


def dwconv_se_backward_ref(grad_out, x, weight, bn_weight, bn_bias, running_mean, running_var,
                           se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                           stride, training, eps):
    """Hand-written backward of the composition; returns grads of x and the 7 parameters."""
    params = (weight, bn_weight, bn_bias, se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias)
    if x.numel() == 0:  # aten's native_batch_norm_backward dies with SIGFPE on an empty batch
        return [torch.zeros_like(x)] + [torch.zeros_like(t, memory_format=torch.contiguous_format)
                                        for t in params]
    p = forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
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
    d_h = (d_e @ se_expand_weight.to(acc)) * silu_grad(p["h"])     # [N, Cr]
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


def dwconv_se_ref(x, weight, bn_weight, bn_bias, running_mean, running_var,
                  se_reduce_weight, se_reduce_bias, se_expand_weight, se_expand_bias,
                  *, stride=1, training=True, momentum=0.1, eps=1e-5) -> torch.Tensor:
    """Torch reference, differentiable by autograd; updates running stats in training mode."""
    se_reduce_weight, se_expand_weight = dense_se_weights(se_reduce_weight, se_expand_weight, x.shape[1])
    parts = forward_parts(x, weight, bn_weight, bn_bias, running_mean, running_var, se_reduce_weight,
                          se_reduce_bias, se_expand_weight, se_expand_bias, stride, training, eps)
    if training and running_mean is not None:
        update_running_stats_ref(running_mean, running_var, parts["mean"], parts["var"],
                                 parts["z"].numel() // parts["z"].shape[1], momentum)
    return parts["out"].to(x.dtype).contiguous(memory_format=memory_format_of(x))
