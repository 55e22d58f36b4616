"""The fused depthwise-conv + SE middle of MBConv and Fused-MBConv (through ``dwconv_se``)
against the plain composition: outputs, gradients and BN statistics in float64, the
fall-backs, and the torch/Triton backends agreeing. CPU, small shapes."""
import copy
import functools

import pytest
import torch
import torch.nn as nn
from block_helpers import out_size, randomize_

import dartsfast.nn.blocks as blocks_mod
from dartsfast.nn import FusedMBConv, MBConv
from dartsfast.nn.blocks import DepthwiseSE, FusedDepthwiseSE
from dartsfast.testing import assert_close_to_reference, make_generator, random_tensor

# ----------------------------------------------------------------------------- fused MBConv middle

def _twin_mbconvs(in_chs, out_chs, k, stride, seed):
    # Non-default momentum and eps: the fused call must pass bn2's own, not the defaults.
    norm = functools.partial(nn.BatchNorm2d, momentum=0.3, eps=1e-3)
    fused = randomize_(MBConv(in_chs, out_chs, k, stride, norm_layer=norm).double(), make_generator(seed))
    plain = MBConv(in_chs, out_chs, k, stride, norm_layer=norm, fused=False).double()
    plain.load_state_dict(fused.state_dict())  # same keys either way: strict load works
    assert fused.fused and not plain.fused
    assert type(fused.dw_se) is FusedDepthwiseSE and type(plain.dw_se) is DepthwiseSE
    return fused, plain


@pytest.mark.parametrize("in_chs,out_chs,k,stride,channels_last", [
    (8, 8, 3, 1, False),   # residual block
    (6, 10, 5, 2, True),   # stride 2, k5, odd-ish channels, NHWC
])
def test_mbconv_fused_middle_matches_composition(in_chs, out_chs, k, stride, channels_last):
    # float64 on both paths, so any difference is a bug, not rounding (tolerance 1e-12).
    fused, plain = _twin_mbconvs(in_chs, out_chs, k, stride, seed=2)
    f64 = torch.float64
    opt_f = torch.optim.SGD(fused.parameters(), lr=0.1)
    opt_p = torch.optim.SGD(plain.parameters(), lr=0.1)
    gen = make_generator(3)
    for step in range(3):  # updates change weights and BN stats between steps
        x = random_tensor((4, in_chs, 9, 11), dtype=f64, generator=gen, channels_last=channels_last)
        grad = random_tensor((4, out_chs, out_size(9, stride), out_size(11, stride)), dtype=f64, generator=gen)
        outs = []
        for block, opt in ((fused, opt_f), (plain, opt_p)):
            opt.zero_grad()
            out = block(x)
            (out * grad).sum().backward()
            opt.step()
            outs.append(out)
        assert_close_to_reference(outs[0], outs[1], f64, f"step {step} output")
        for (name, pf), pp in zip(fused.named_parameters(), plain.parameters()):
            assert_close_to_reference(pf.grad, pp.grad, f64, f"step {step} grad of {name}")
    for (name, bf), bp in zip(fused.named_buffers(), plain.buffers()):
        if name.endswith("num_batches_tracked"):
            assert int(bf) == int(bp) == 7 + 3, name
        else:
            assert_close_to_reference(bf, bp, f64, name)
    fused.eval(), plain.eval()
    x = random_tensor((3, in_chs, 7, 7), dtype=f64, generator=gen, channels_last=channels_last)
    assert_close_to_reference(fused(x), plain(x), f64, "eval output")


def test_mbconv_fused_path_calls_dwconv_se(monkeypatch):
    # Without this, a "fused" middle that quietly ran the composition would pass the
    # equivalence test above.
    calls = []
    real = blocks_mod.dwconv_se

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(blocks_mod, "dwconv_se", counting)
    x = random_tensor((2, 8, 7, 7), generator=make_generator(4))
    MBConv(8, 8, stride=2)(x)
    assert len(calls) == 1 and calls[0]["stride"] == 2 and calls[0]["training"] is True
    MBConv(8, 8, fused=False)(x)
    MBConv(8, 8).eval()(x)
    assert len(calls) == 2 and calls[1]["training"] is False


@pytest.mark.parametrize("kwargs,why", [
    ({"act_layer": nn.ReLU}, "SiLU"),
    ({"norm_layer": lambda c: nn.GroupNorm(1, c)}, "BatchNorm2d"),
    ({"norm_layer": lambda c: nn.BatchNorm2d(c, momentum=None)}, "momentum"),
    ({"se_ratio": 0.0}, "squeeze-excitation"),
])
def test_mbconv_falls_back_to_composition(kwargs, why):
    block = MBConv(8, 8, **kwargs)
    assert not block.fused and type(block.dw_se) is DepthwiseSE
    out = block(random_tensor((2, 8, 5, 5), generator=make_generator(5)))
    assert out.shape == (2, 8, 5, 5) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=why):
        MBConv(8, 8, fused=True, **kwargs)


def test_fused_middle_honours_bn_momentum_none_set_later():
    # A user may flip momentum to None after construction; the fused forward must then
    # use BatchNorm2d's cumulative average like the composition does.
    fused, plain = _twin_mbconvs(8, 8, 3, 1, seed=6)
    fused.dw_se.bn2.momentum = plain.dw_se.bn2.momentum = None
    x = random_tensor((2, 8, 5, 5), dtype=torch.float64, generator=make_generator(7))
    fused(x), plain(x)
    assert_close_to_reference(fused.dw_se.bn2.running_var, plain.dw_se.bn2.running_var, torch.float64)


def test_fused_mbconv_gradcheck():
    # End-to-end float64 gradcheck of a tiny fused MBConv (input and every parameter),
    # through dwconv_se's hand-written backward, in training mode (batch statistics).
    block = randomize_(MBConv(3, 3, exp_ratio=2, se_ratio=0.5).double(), make_generator(8))
    names = [n for n, _ in block.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in block.parameters()]
    x = random_tensor((2, 3, 4, 4), dtype=torch.float64, generator=make_generator(9), requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(block, dict(zip(names, ps)), (x,))

    # fast_mode checks random projections of the Jacobian: ~8x quicker, still exact in float64.
    assert torch.autograd.gradcheck(f, (x, *params), fast_mode=True)


# ----------------------------------------------------------------------------- Fused-MBConv with SE

def _twin_fused_mbconvs(in_chs, out_chs, stride, exp_ratio, seed):
    norm = functools.partial(nn.BatchNorm2d, momentum=0.3, eps=1e-3)
    kwargs = dict(stride=stride, exp_ratio=exp_ratio, se_ratio=0.25, norm_layer=norm)
    fused = randomize_(FusedMBConv(in_chs, out_chs, **kwargs).double(), make_generator(seed))
    plain = FusedMBConv(in_chs, out_chs, fused=False, **kwargs).double()
    plain.load_state_dict(fused.state_dict())  # the identity filter is not in the state dict
    assert fused.fused and not plain.fused
    return fused, plain


@pytest.mark.parametrize("in_chs,out_chs,stride,exp_ratio,channels_last", [
    (8, 8, 1, 4.0, False),   # residual
    (6, 10, 2, 1.0, True),   # Fused-MBConv1 (no projection), stride 2, NHWC
])
def test_fused_mbconv_se_through_dwconv_se_matches_composition(in_chs, out_chs, stride, exp_ratio, channels_last):
    fused, plain = _twin_fused_mbconvs(in_chs, out_chs, stride, exp_ratio, seed=8)
    f64 = torch.float64
    gen = make_generator(9)
    for step in range(2):
        x = random_tensor((3, in_chs, 9, 11), dtype=f64, generator=gen, channels_last=channels_last)
        grad = random_tensor((3, out_chs, out_size(9, stride), out_size(11, stride)), dtype=f64, generator=gen)
        outs = []
        for block in (fused, plain):
            block.zero_grad()
            out = block(x)
            (out * grad).sum().backward()
            outs.append(out)
        assert_close_to_reference(outs[0], outs[1], f64, f"step {step} output")
        for (name, pf), pp in zip(fused.named_parameters(), plain.parameters()):
            assert_close_to_reference(pf.grad, pp.grad, f64, f"step {step} grad of {name}")
    plain_buffers = dict(plain.named_buffers())
    for name, bf in fused.named_buffers():
        if name != "identity_dw":
            assert_close_to_reference(bf.double(), plain_buffers[name].double(), f64, name)
    fused.eval(), plain.eval()
    x = random_tensor((2, in_chs, 7, 7), dtype=f64, generator=gen, channels_last=channels_last)
    assert_close_to_reference(fused(x), plain(x), f64, "eval output")


def test_fused_mbconv_se_calls_dwconv_se_with_a_1x1_identity(monkeypatch):
    calls = []
    real = blocks_mod.dwconv_se

    def counting(x, weight, *args, **kwargs):
        calls.append((weight.shape, kwargs["stride"]))
        return real(x, weight, *args, **kwargs)

    monkeypatch.setattr(blocks_mod, "dwconv_se", counting)
    x = random_tensor((2, 8, 7, 7), generator=make_generator(10))
    FusedMBConv(8, 8, stride=2, se_ratio=0.25)(x)
    FusedMBConv(8, 8, se_ratio=0.25, fused=False)(x)
    FusedMBConv(8, 8)(x)  # no SE: nothing to fuse
    assert calls == [((32, 1, 1, 1), 1)]
    with pytest.raises(ValueError, match="squeeze-excitation"):
        FusedMBConv(8, 8, fused=True)


@pytest.mark.interpreter
def test_fused_mbconv_se_matches_between_torch_and_triton_backends():
    pytest.importorskip("triton")
    from dartsfast import backend

    if backend.why_unavailable("triton"):
        pytest.skip(backend.why_unavailable("triton"))
    torch.manual_seed(11)
    block = FusedMBConv(6, 6, stride=1, exp_ratio=2.0, se_ratio=0.25).train()
    twin = copy.deepcopy(block)
    x = random_tensor((2, 6, 7, 9), generator=make_generator(12), channels_last=True)
    results = []
    for name, module in (("torch", block), ("triton", twin)):
        xi = x.clone().requires_grad_(True)
        with backend.use_backend(name):
            out = module(xi)
            out.square().sum().backward()
        results.append((out, xi.grad, dict(module.named_parameters()), dict(module.named_buffers())))
    (out_t, gx_t, p_t, b_t), (out_r, gx_r, p_r, b_r) = results
    assert_close_to_reference(out_r, out_t, torch.float32, "output")
    assert_close_to_reference(gx_r, gx_t, torch.float32, "grad x")
    for name, p in p_t.items():
        assert_close_to_reference(p_r[name].grad, p.grad, torch.float32, f"grad {name}")
    for name, b in b_t.items():
        assert_close_to_reference(b_r[name].double(), b.double(), torch.float32, name)
