"""Tests of dartsfast.nn: shapes, the residual rule, parameter counts, the fused MBConv
middle against the plain composition, dtype/layout under autocast, drop path, argument
checks. Everything runs on CPU in float64/fp32/bf16 and small shapes (< 20 s on 2 cores)."""
import copy
import functools
import math

import pytest
import torch
import torch.nn as nn

import dartsfast.nn.blocks as blocks_mod
from dartsfast.nn import DropPath, DSConv, FusedMBConv, MBConv, SqueezeExcite
from dartsfast.nn.blocks import DepthwiseSE, FusedDepthwiseSE
from dartsfast.testing import assert_close_to_reference, make_generator, random_tensor, relative_error

BLOCKS = [DSConv, MBConv, FusedMBConv]


def out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def randomize_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Random weights everywhere, including BN affine and running stats, so that no
    term (bias, running mean, BN scale) can be silently dropped and still pass."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()  # keeps activations O(1) through the block
                m.weight.copy_(random_tensor(m.weight.shape, generator=generator, scale=fan_in ** -0.5))
                if m.bias is not None:
                    m.bias.copy_(random_tensor(m.bias.shape, generator=generator, scale=0.3))
            elif isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(random_tensor((c,), generator=generator, scale=0.3, offset=1.0))
                m.bias.copy_(random_tensor((c,), generator=generator, scale=0.3))
                m.running_mean.copy_(random_tensor((c,), generator=generator, scale=0.3))
                m.running_var.copy_(random_tensor((c,), generator=generator, scale=0.3).abs() + 0.5)
                m.num_batches_tracked.fill_(7)
    return module


def last_norm(block: nn.Module) -> nn.BatchNorm2d:
    return [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)][-1]


# ----------------------------------------------------------------------------- shapes, residual

@pytest.mark.parametrize("cls", BLOCKS)
@pytest.mark.parametrize("stride,k", [(1, 3), (2, 5), (2, 3), (1, 5)])
@pytest.mark.parametrize("hw", [(7, 7), (9, 13)])
def test_output_shape_odd_sizes_batch_1(cls, stride, k, hw):
    # C=123 and odd H, W: nothing may assume multiples of 8 or even sizes.
    in_chs, out_chs = 123, (123 if stride == 1 else 61)
    block = cls(in_chs, out_chs, dw_kernel_size=k, stride=stride)
    x = random_tensor((1, in_chs) + hw, generator=make_generator(0))
    out = block(x)
    assert out.shape == (1, out_chs, out_size(hw[0], stride), out_size(hw[1], stride))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("cls,kwargs", [(DSConv, {}), (MBConv, {}), (MBConv, {"fused": False}),
                                        (FusedMBConv, {}), (FusedMBConv, {"exp_ratio": 1.0})])
@pytest.mark.parametrize("in_chs,out_chs,stride,residual", [(8, 8, 1, True), (8, 8, 2, False),
                                                            (8, 12, 1, False)])
def test_residual_rule(cls, kwargs, in_chs, out_chs, stride, residual):
    block = cls(in_chs, out_chs, stride=stride, **kwargs)
    assert block.has_skip is residual
    with torch.no_grad():  # zeroed last BN: the branch's output is exactly 0
        last_norm(block).weight.zero_()
        last_norm(block).bias.zero_()
    x = random_tensor((2, in_chs, 7, 7), generator=make_generator(1))
    out = block(x)
    if residual:
        assert torch.equal(out, x)
    else:  # no shortcut at all (not even a projection): the output is the zero branch
        assert out.shape == (2, out_chs, out_size(7, stride), out_size(7, stride))
        assert torch.count_nonzero(out) == 0


# ----------------------------------------------------------------------------- parameter counts

@pytest.mark.parametrize("make,expected", [
    # SE alone, C=64, rd=16: reduce 64*16+16, expand 16*64+64.
    (lambda: SqueezeExcite(64), (64 * 16 + 16) + (16 * 64 + 64)),                           # 2128
    # DSConv(16→24, k3, se .25 → rd 4): conv_dw 16*9 + bn1 2*16 + SE (16*4+4)+(4*16+16)
    # + conv_pw 16*24 + bn2 2*24.
    (lambda: DSConv(16, 24), 144 + 32 + 68 + 80 + 384 + 48),                                  # 756
    (lambda: DSConv(16, 24, se_ratio=0), 144 + 32 + 384 + 48),                                # 608
    # MBConv(16→16, k3, exp4 → mid 64, se .25 → rd 4 from the INPUT channels):
    # conv_pw 16*64 + bn1 2*64 + conv_dw 64*9 + bn2 2*64 + SE (64*4+4)+(4*64+64)
    # + conv_pwl 64*16 + bn3 2*16.
    (lambda: MBConv(16, 16), 1024 + 128 + 576 + 128 + 260 + 320 + 1024 + 32),              # 3492
    # MBConv(16→24, k5, s2, exp6 → mid 96, rd 4): 16*96 + 192 + 96*25 + 192
    # + (96*4+4) + (4*96+96) + 96*24 + 48.
    (lambda: MBConv(16, 24, 5, 2, exp_ratio=6), 1536 + 192 + 2400 + 192 + 388 + 480 + 2304 + 48),  # 7540
    # FusedMBConv(16→32, k3, exp4 → mid 64, no SE): DENSE conv_exp 16*64*9 (a grouped conv
    # would give 64*9) + bn1 2*64 + conv_pwl 64*32 + bn2 2*32.
    (lambda: FusedMBConv(16, 32), 9216 + 128 + 2048 + 64),                                  # 11456
    # FusedMBConv(16→16, exp4, se .25 → rd 4 on mid 64): 9216 + 128 + (64*4+4) + (4*64+64)
    # + 64*16 + 2*16.
    (lambda: FusedMBConv(16, 16, se_ratio=0.25), 9216 + 128 + 260 + 320 + 1024 + 32),       # 10980
    # Fused-MBConv1 (24→24, exp 1): conv_exp 24*24*9 + bn1 2*24; no conv_pwl / bn2.
    (lambda: FusedMBConv(24, 24, exp_ratio=1), 5184 + 48),                                   # 5232
    # Fused-MBConv1 with SE (24→32, rd round(24*.25)=6 on the 32 output channels):
    # 24*32*9 + 2*32 + (32*6+6) + (6*32+32).
    (lambda: FusedMBConv(24, 32, exp_ratio=1, se_ratio=0.25), 6912 + 64 + 198 + 224),       # 7398
])
def test_parameter_count(make, expected):
    assert sum(p.numel() for p in make().parameters()) == expected


def test_fused_mbconv_expansion_is_dense():
    # Earlier code built conv_exp with groups=in_chs (a depthwise conv): that is MBConv's
    # middle, not a Fused-MBConv.
    for block in (FusedMBConv(16, 32, 5), FusedMBConv(24, 24, exp_ratio=1)):
        assert block.conv_exp.groups == 1
        in_chs = block.conv_exp.in_channels
        assert block.conv_exp.weight.shape[1:] == (in_chs, block.conv_exp.kernel_size[0],
                                                   block.conv_exp.kernel_size[0])
    assert isinstance(FusedMBConv(24, 24, exp_ratio=1).conv_pwl, nn.Identity)


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


# ----------------------------------------------------------------------------- dtype, layout, autocast

def _all_variants():
    return [DSConv(8, 8, 5), MBConv(8, 8), MBConv(8, 8, fused=False), FusedMBConv(8, 8),
            FusedMBConv(8, 8, exp_ratio=1, se_ratio=0.25)]


@pytest.mark.parametrize("channels_last", [False, True])
def test_dtype_and_memory_format_preserved(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = random_tensor((2, 8, 7, 7), generator=make_generator(10), channels_last=channels_last)
    for block in _all_variants():
        for mode in (block.train, block.eval):
            mode()
            out = block(x)
            assert out.dtype == torch.float32, type(block).__name__
            assert out.is_contiguous(memory_format=fmt), f"{type(block).__name__} lost {fmt}"


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("make", [lambda: DSConv(8, 12, 3, 2), lambda: MBConv(8, 12, 3, 2),
                                  lambda: MBConv(8, 12, 3, 2, fused=False),
                                  lambda: FusedMBConv(8, 12, 3, 2, se_ratio=0.25)])
def test_cpu_autocast_bf16(make, channels_last):
    block = randomize_(make(), make_generator(11))
    x = random_tensor((4, 8, 9, 9), generator=make_generator(12), channels_last=channels_last)
    ref = copy.deepcopy(block)(x)  # fp32 result; a copy so running stats do not diverge
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
        # Non-residual blocks: fp32 in, bf16 out, as any autocast conv stack.
        assert out.dtype == torch.bfloat16
        assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    out.float().square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name
    err = relative_error(out, ref)
    assert err < 3e-2, f"bf16 autocast output is {err:.2e} away from fp32"


@pytest.mark.parametrize("block", _all_variants(), ids=lambda b: type(b).__name__)
def test_cpu_autocast_bf16_residual_keeps_bf16(block):
    # A bf16 activation (a previous block's output under autocast) through a residual
    # block stays bf16: nothing promotes it back to fp32.
    x = random_tensor((2, 8, 7, 7), dtype=torch.bfloat16, generator=make_generator(13))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert block.has_skip and out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


# ----------------------------------------------------------------------------- drop path

def test_drop_path_identity_in_eval_and_at_zero():
    x = random_tensor((16, 3, 4, 4), generator=make_generator(14))
    assert torch.equal(DropPath(0.5).eval()(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_drop_path_drops_whole_samples_and_rescales():
    x = torch.ones(2000, 3, 2, 2)
    with torch.random.fork_rng():
        torch.manual_seed(15)
        out = DropPath(0.5).train()(x)
    per_sample = out.flatten(1)
    dropped = (per_sample == 0).all(1)
    kept = (per_sample == 2).all(1)  # survivors scaled by 1 / keep_prob = 2
    assert bool((dropped | kept).all()), "a sample was partly dropped or scaled wrongly"
    # Binomial(2000, 0.5): sd 22.4, so ±150 is a 6.7-sd band.
    assert 850 < int(kept.sum()) < 1150
    assert out.is_contiguous(memory_format=torch.contiguous_format)


@pytest.mark.parametrize("cls", BLOCKS)
def test_block_drop_path_on_residual_branch_only(cls):
    # Same weights without drop path give the branch b = out_ref − x exactly per sample;
    # with p=0.5 each sample's output must be x (dropped) or x + 2·b (kept).
    x = random_tensor((64, 8, 5, 5), dtype=torch.float64, generator=make_generator(16))
    with torch.random.fork_rng():
        torch.manual_seed(17)
        ref = cls(8, 8).double()
        dp = cls(8, 8, drop_path_rate=0.5).double()
    dp.load_state_dict(ref.state_dict())
    branch = ref(x) - x
    with torch.random.fork_rng():
        torch.manual_seed(18)
        out = dp(x)
    dropped = (out == x).flatten(1).all(1)
    assert 0 < int(dropped.sum()) < 64, "with p=0.5 over 64 samples both outcomes must occur"
    torch.testing.assert_close(out[~dropped], x[~dropped] + 2 * branch[~dropped])
    # A non-residual block never drops its only path.
    plain = cls(8, 12, stride=2).double()
    drop = cls(8, 12, stride=2, drop_path_rate=0.5).double()
    drop.load_state_dict(plain.state_dict())
    assert torch.equal(drop(x), plain(x))


# ----------------------------------------------------------------------------- SE, arguments

def test_squeeze_excite_formula():
    se = randomize_(SqueezeExcite(12, rd_ratio=0.25).double(), make_generator(19))
    assert se.conv_reduce.out_channels == 3
    x = random_tensor((2, 12, 5, 3), dtype=torch.float64, generator=make_generator(20))
    s = x.mean((2, 3)) @ se.conv_reduce.weight.flatten(1).T + se.conv_reduce.bias
    s = torch.sigmoid(torch.nn.functional.silu(s) @ se.conv_expand.weight.flatten(1).T + se.conv_expand.bias)
    assert_close_to_reference(se(x), x * s[:, :, None, None], torch.float64)
    assert SqueezeExcite(12, rd_channels=5).conv_reduce.out_channels == 5


@pytest.mark.parametrize("make,name", [
    (lambda: DropPath(1.0), "drop_prob"),
    (lambda: DropPath(-0.1), "drop_prob"),
    (lambda: DropPath(math.nan), "drop_prob"),
    (lambda: SqueezeExcite(0), "in_chs"),
    (lambda: SqueezeExcite(8, rd_ratio=0), "rd_ratio"),
    (lambda: SqueezeExcite(8, rd_channels=0), "rd_channels"),
    *[(lambda cls=cls, kw=kw: cls(8, 8, **kw), name) for cls in BLOCKS for kw, name in [
        ({"dw_kernel_size": 4}, "dw_kernel_size"),
        ({"dw_kernel_size": 0}, "dw_kernel_size"),
        ({"stride": 3}, "stride"),
        ({"se_ratio": -0.25}, "se_ratio"),
        ({"drop_path_rate": 1.0}, "drop_path_rate"),
        ({"drop_path_rate": -0.5}, "drop_path_rate"),
    ]],
    *[(lambda cls=cls: cls(0, 8), "in_chs") for cls in BLOCKS],
    *[(lambda cls=cls: cls(8, 2.5), "out_chs") for cls in BLOCKS],
    (lambda: MBConv(8, 8, exp_ratio=0), "exp_ratio"),
    (lambda: FusedMBConv(8, 8, exp_ratio=-1), "exp_ratio"),
])
def test_bad_arguments_raise_value_error_naming_them(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize("block", [DSConv, MBConv, FusedMBConv])
def test_noskip_removes_the_residual(block):
    assert block(8, 8).has_skip and not block(8, 8, noskip=True).has_skip


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
