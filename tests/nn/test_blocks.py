"""Tests of dartsfast.nn's blocks: shapes, the residual rule, parameter counts, dtype/layout
under autocast, drop path on the residual branch, argument checks. Everything runs on CPU
in float64/fp32/bf16 and small shapes (seconds on 2 cores)."""
import copy
import math

import pytest
import torch
import torch.nn as nn
from block_helpers import last_norm, out_size, randomize_

from dartsfast.nn import DropPath, DSConv, FusedMBConv, MBConv, SqueezeExcite
from dartsfast.testing import make_generator, random_tensor, relative_error

BLOCKS = [DSConv, MBConv, FusedMBConv]


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


# ----------------------------------------------------------------------------- arguments

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
