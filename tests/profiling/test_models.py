"""profiling.models: FLOPs and minimum bytes against counts done by hand (written out here,
independently of the model code), parameter counts against the real modules, and forward /
backward conv FLOPs against torch's FlopCounterMode."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dartsfast.profiling import presets
from dartsfast.profiling.models import block_cost, block_layers
from dartsfast.profiling.presets import BlockShape, BlockSpec
from dartsfast.profiling.profiler import build_block


def spec(block, c_in, c_out, h, stride, exp, se, k=3, w=None):
    return BlockSpec(block, BlockShape(c_in, c_out, h, w or h, stride, exp, kernel=k), se)


def test_fused_mbconv_by_hand():
    # FusedMBConv 8→16, k3, stride 2, exp 4 (mid 32), no SE; N=2 at 8×8 → 4×4.
    s = spec("fused_mbconv", 8, 16, 8, 2, 4.0, 0.0)
    conv_exp = 4 * 4 * 32 * 8 * 9          # H'W' · C_out · C_in · k² = 36864 MACs per image
    conv_pwl = 4 * 4 * 16 * 32             # 1×1 32→16 at 4×4 = 8192
    flops = 2 * 2 * (conv_exp + conv_pwl)  # 2 FLOP/MAC, 2 images = 180224
    params = 32 * 8 * 9 + 2 * 32 + 16 * 32 + 2 * 16   # 2304 + 64 + 512 + 32 = 2912
    buffers = 2 * 32 + 2 * 16                          # running mean/var = 96
    io = 2 * ((8 * 64 + 32 * 16) + (32 * 16 + 16 * 16))  # per conv: input + output, ×N = 3584
    c = block_cost(s, 2, 4, "inference")
    assert c.flops == flops == 180224
    assert c.params == params
    assert c.bytes == 4 * (io + params + buffers) == 4 * 6592
    t = block_cost(s, 2, 4, "training")
    assert t.flops == 3 * flops + 4 * params
    # forward io + P + 2B, backward 2·io + 2P (no residual: stride 2), SGD step 5P
    assert t.bytes == 4 * ((io + params + 2 * buffers) + (2 * io + 2 * params) + 5 * params)


def test_mbconv_with_se_and_residual_by_hand():
    # MBConv 8→8, k3, stride 1, exp 4 (mid 32), SE 0.25 of the 8 input channels (Cr 2);
    # N=2 at 4×4; stride 1 and C_in == C_out: residual.
    s = spec("mbconv", 8, 8, 4, 1, 4.0, 0.25)
    macs = 16 * 32 * 8 + 16 * 32 * 9 + 16 * 8 * 32 + (32 * 2 + 2 * 32)   # 4096 + 4608 + 4096 + 128
    params = 8 * 32 + 64 + 32 * 9 + 64 + (32 * 2 + 2 + 2 * 32 + 32) + 32 * 8 + 16  # = 1106
    buffers = 2 * (32 + 32 + 8)
    io = 2 * ((128 + 512) + (512 + 512) + (512 + 128))     # 4608
    x = 2 * 128                                            # the residual input (and its grad)
    assert params == 1106
    c = block_cost(s, 2, 4, "inference")
    assert c.flops == 2 * 2 * macs == 51712
    assert c.bytes == 4 * (io + x + params + buffers) == 24456
    t = block_cost(s, 2, 2, "training")  # bf16: 2 bytes
    assert t.flops == 3 * 51712 + 4 * 1106 == 159560
    fwd, bwd, step = io + x + params + 2 * buffers, 2 * io + x + 2 * params, 5 * params
    assert t.bytes == 2 * (fwd + bwd + step) == 2 * 23472


def test_dsconv_odd_size_kernel5_by_hand():
    # DSConv 16→24, k5, stride 2 on 9×9 (odd) → 5×5, SE Cr = 4, fp16, one image.
    s = spec("dsconv", 16, 24, 9, 2, 1.0, 0.25, k=5)
    macs = 25 * 16 * 25 + (16 * 4 + 4 * 16) + 25 * 24 * 16    # 10000 + 128 + 9600
    params = 16 * 25 + 32 + (16 * 4 + 4 + 4 * 16 + 16) + 16 * 24 + 48   # 1012
    io = (16 * 81 + 16 * 25) + (16 * 25 + 24 * 25)                     # 2696
    c = block_cost(s, 1, 2, "inference")
    assert c.flops == 2 * macs == 39456
    assert c.params == params == 1012
    assert c.bytes == 2 * (io + params + 80)
    assert c.intensity == pytest.approx(39456 / (2 * 3788))


def test_fused_mbconv_exp1_has_one_conv():
    layers = block_layers(spec("fused_mbconv", 24, 24, 16, 1, 1.0, 0.0))
    assert [c.name for c in layers.convs] == ["conv_exp"] and layers.convs[0].c_out == 24
    assert layers.residual and layers.params == 24 * 24 * 9 + 48


ALL_SPECS = presets.block_specs(presets.effnetv2_s() + presets.effnet_b0(), presets.BLOCKS)


@pytest.mark.parametrize("s", ALL_SPECS[::3] + [spec("fused_mbconv", 16, 32, 8, 2, 4.0, 0.25)],
                         ids=lambda s: s.label)
def test_param_count_and_residual_match_the_module(s):
    module = build_block(s)
    layers = block_layers(s)
    assert layers.params == sum(p.numel() for p in module.parameters())
    assert layers.buffers == sum(b.numel() for n, b in module.named_buffers() if "running" in n)
    assert layers.residual == module.has_skip


@pytest.mark.parametrize("s", [spec("mbconv", 8, 8, 6, 1, 4.0, 0.25), spec("fused_mbconv", 8, 16, 7, 2, 4.0, 0.0),
                               spec("dsconv", 12, 8, 5, 1, 1.0, 0.25, k=5)], ids=lambda s: s.block)
def test_flops_agree_with_torch_flop_counter(s):
    # FlopCounterMode counts 2·MACs of convs (SE's FCs are 1×1 convs here), nothing elementwise:
    # the same convention. Training: its backward counts data- and weight-grad convs.
    module = build_block(s)
    x = torch.randn(3, s.shape.c_in, s.shape.h, s.shape.w)
    with FlopCounterMode(display=False) as counter:
        module(x)
    assert counter.get_total_flops() == block_cost(s, 3, 4, "inference").flops
    if s.block != "fused_mbconv":
        # torch 2.x's convolution_backward formula ignores groups (a depthwise 3×3 backward
        # on 32 channels counts 33× its forward), so only the dense block is checked there.
        return
    x.requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        module(x).sum().backward()
    params = block_layers(s).params
    assert counter.get_total_flops() == block_cost(s, 3, 4, "training").flops - 4 * params


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown mode 'backward'"):
        block_cost(spec("mbconv", 8, 8, 4, 1, 4.0, 0.25), 2, 4, "backward")
    with pytest.raises(ValueError, match="unknown block 'resnet'"):
        block_layers(spec("resnet", 8, 8, 4, 1, 4.0, 0.25))
    with pytest.raises(ValueError, match="batch"):
        block_cost(spec("mbconv", 8, 8, 4, 1, 4.0, 0.25), 0, 4, "inference")
