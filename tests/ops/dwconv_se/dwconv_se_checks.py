"""Oracles, inputs and checks shared by the dwconv_se test modules beside this file (pytest's
default import mode puts this folder on sys.path, so they import it by name)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast import backend
from dartsfast.ops import dwconv_se
from dartsfast.testing import assert_close_to_reference, make_generator, poisoned_outputs, random_tensor


class ModuleComposition(nn.Module):
    """The independent oracle: stock nn modules, exactly as DESIGN.md §2 writes the op."""

    def __init__(self, channels, reduced, kernel_size, stride):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.reduce = nn.Linear(channels, reduced)
        self.expand = nn.Linear(reduced, channels)

    def forward(self, x):
        y = F.silu(self.bn(self.conv(x)))
        s = torch.sigmoid(self.expand(F.silu(self.reduce(y.mean((2, 3))))))
        return y * s[:, :, None, None]

    def op_args(self):
        """Arguments for dwconv_se sharing this module's parameters and buffers."""
        return (self.conv.weight, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var,
                self.reduce.weight, self.reduce.bias, self.expand.weight, self.expand.bias)

    def parameters_in_op_order(self):
        return [self.conv.weight, self.bn.weight, self.bn.bias, self.reduce.weight, self.reduce.bias,
                self.expand.weight, self.expand.bias]


def make_module(channels, kernel_size, stride, *, seed, dtype=torch.float64, reduced=None):
    torch.manual_seed(seed)
    module = ModuleComposition(channels, reduced or max(1, channels // 4), kernel_size, stride).to(dtype)
    gen = make_generator(seed)
    with torch.no_grad():  # non-trivial BN affine and running statistics
        module.bn.weight.copy_(random_tensor((channels,), generator=gen, scale=0.3, offset=1.0))
        module.bn.bias.copy_(random_tensor((channels,), generator=gen, scale=0.3))
        module.bn.running_mean.copy_(random_tensor((channels,), generator=gen, scale=0.2))
        module.bn.running_var.copy_(random_tensor((channels,), generator=gen, scale=0.2).abs() + 0.5)
    return module


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


GRAD_NAMES = ("x", "weight", "bn_weight", "bn_bias", "se_reduce_weight", "se_reduce_bias",
              "se_expand_weight", "se_expand_bias")


def composition(x, weight, bn_weight, bn_bias, running_mean, running_var, srw, srb, sew, seb,
                stride, training, momentum=0.1, eps=1e-5):
    """DESIGN.md §2 written with stock functional ops (the oracle; no dartsfast code)."""
    k = weight.shape[-1]
    y = F.conv2d(x, weight, stride=stride, padding=k // 2, groups=x.shape[1])
    y = F.silu(F.batch_norm(y, running_mean, running_var, bn_weight, bn_bias, training, momentum, eps))
    s = torch.sigmoid(F.linear(F.silu(F.linear(y.mean((2, 3)), srw, srb)), sew, seb))
    return y * s[:, :, None, None]


def make_inputs(n, c, hw, k, *, dtype, param_dtype, channels_last, seed, device=DEVICE):
    """x, the 7 parameters in op order, and (running_mean, running_var); fresh random values."""
    gen = make_generator(seed)
    cr = max(1, c // 4)
    x = random_tensor((n, c, *hw), dtype=dtype, generator=gen, channels_last=channels_last, device=device)
    shapes = [((c, 1, k, k), 0.3, 0.0), ((c,), 0.3, 1.0), ((c,), 0.3, 0.0), ((cr, c), 0.5, 0.0),
              ((cr,), 0.3, 0.0), ((c, cr), 0.5, 0.0), ((c,), 0.3, 0.0)]
    params = [random_tensor(s, dtype=param_dtype, generator=gen, scale=sc, offset=off, device=device)
              for s, sc, off in shapes]
    running = (random_tensor((c,), dtype=param_dtype, generator=gen, scale=0.2, device=device),
               random_tensor((c,), dtype=param_dtype, generator=gen, scale=0.2, device=device).abs() + 0.5)
    return x, params, running


def run(fn, x, params, running, grad_out, **kwargs):
    """(out, grads of x and the 7 parameters, running_mean, running_var) of one step."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *params)]
    rm, rv = (t.detach().clone() for t in running)
    out = fn(leaves[0], *leaves[1:4], rm, rv, *leaves[4:], **kwargs)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out, grads, rm, rv


def triton_step(x, params, running, grad_out, stride, training):
    with backend.use_backend("triton"), poisoned_outputs():
        return run(dwconv_se, x, params, running, grad_out, stride=stride, training=training)


def check_against_float64(x, params, running, stride, training, seed):
    dtype = x.dtype
    n, c, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    grad_out = random_tensor((n, c, ho, wo), dtype=dtype, generator=make_generator(seed + 1), device=x.device,
                             channels_last=x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous())
    out, grads, rm, rv = triton_step(x, params, running, grad_out, stride, training)
    up = lambda ts: [t.double() for t in ts]  # noqa: E731
    ref, ref_grads, ref_rm, ref_rv = run(composition, x.double(), up(params), up(running), grad_out.double(),
                                         stride=stride, training=training)
    low = dtype in (torch.float16, torch.bfloat16)
    # Plain PyTorch in the activation dtype (parameters too): the low-precision baseline.
    base, base_grads, _, _ = (run(composition, x, [p.to(dtype) for p in params], [r.to(dtype) for r in running],
                                  grad_out, stride=stride, training=training) if low else (None, [None] * 8, 0, 0))
    fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() \
        else torch.contiguous_format
    assert out.dtype == dtype and out.shape == (n, c, ho, wo) and out.is_contiguous(memory_format=fmt)
    assert grads[0].is_contiguous(memory_format=fmt)
    assert_close_to_reference(out, ref, dtype, "output", base)
    for name, got, want, b, leaf in zip(GRAD_NAMES, grads, ref_grads, base_grads, (x, *params)):
        assert got.dtype == leaf.dtype and got.shape == leaf.shape, name
        assert_close_to_reference(got, want, dtype, f"grad {name}", b)
    # Running statistics live in the parameter dtype: its tolerance (fp32 ≤ 1e-5).
    assert_close_to_reference(rm, ref_rm, running[0].dtype, "running_mean")
    assert_close_to_reference(rv, ref_rv, running[0].dtype, "running_var")
    if not training:
        assert torch.equal(rm, running[0]) and torch.equal(rv, running[1])
