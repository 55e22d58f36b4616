"""widen(): E blocks on a shared input as one wide block, checked against the E blocks
themselves in float64 (outputs, input and parameter gradients, running statistics)."""
import pytest
import torch
import torch.nn as nn
from block_helpers import randomize_

from dartsfast.nn import DSConv, FusedMBConv, MBConv
from dartsfast.nn.layers import SqueezeExcite
from dartsfast.nn.widen import can_widen, widen
from dartsfast.testing import assert_close_to_reference, make_generator, random_tensor

BLOCKS = {
    "dsconv": lambda: DSConv(6, 6, 3, 1, se_ratio=0.25, noskip=True),
    "dsconv_s2_k5": lambda: DSConv(6, 6, 5, 2, se_ratio=0.25, noskip=True),
    "mbconv": lambda: MBConv(6, 6, 3, 1, exp_ratio=4, se_ratio=0.25, noskip=True),
    "mbconv_s2_unfused": lambda: MBConv(6, 6, 3, 2, exp_ratio=2, se_ratio=0.25, noskip=True, fused=False),
    "fused_mbconv": lambda: FusedMBConv(6, 6, 3, 1, exp_ratio=4, noskip=True),
    "fused_mbconv_e1_s2": lambda: FusedMBConv(6, 6, 3, 2, exp_ratio=1, noskip=True),
    "fused_mbconv_se": lambda: FusedMBConv(6, 6, 3, 1, exp_ratio=2, se_ratio=0.25, noskip=True),
}


def _edges(name, e=3, seed=0):
    gen = make_generator(seed)
    return [randomize_(BLOCKS[name](), gen).double() for _ in range(e)]


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("training", [True, False])
def test_wide_block_computes_every_edge_block(name, training):
    blocks = _edges(name)
    wide = widen(blocks)
    for m in blocks + [wide]:
        m.train(training)
    x = random_tensor((4, 6, 9, 9), dtype=torch.float64, generator=make_generator(1)).requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    out = wide(x)
    refs = [b(x_ref) for b in blocks]
    c = refs[0].shape[1]
    assert out.shape == (4, 3 * c) + refs[0].shape[2:]
    for e, ref in enumerate(refs):
        assert_close_to_reference(out[:, e * c:(e + 1) * c], ref, torch.float64, what=f"edge {e}")
    grad = random_tensor(out.shape, dtype=torch.float64, generator=make_generator(2))
    (out * grad).sum().backward()
    sum((r * g).sum() for r, g in zip(refs, grad.split(c, 1))).backward()
    assert_close_to_reference(x.grad, x_ref.grad, torch.float64, what="input grad")
    per_edge = [dict(b.named_parameters()) for b in blocks]
    for key, p in wide.named_parameters():
        ref = torch.cat([pe[key].grad for pe in per_edge], 0)
        assert_close_to_reference(p.grad, ref, torch.float64, what=f"grad of {key}")
    # Running statistics moved (training) or stayed (eval) exactly as each edge's did.
    per_edge_buffers = [dict(b.named_buffers()) for b in blocks]
    for key, buf in wide.named_buffers():
        if key.endswith("running_mean") or key.endswith("running_var"):
            ref = torch.cat([pb[key] for pb in per_edge_buffers], 0)
            assert_close_to_reference(buf, ref, torch.float64, what=key)


def test_widened_weights_are_copies_and_the_rng_is_untouched():
    blocks = _edges("mbconv")
    state = torch.get_rng_state()
    wide = widen(blocks)
    assert torch.equal(torch.get_rng_state(), state)  # no throw-away initialisation drawn
    with torch.no_grad():
        wide.conv_pw.weight.zero_()
    assert all(b.conv_pw.weight.abs().sum() > 0 for b in blocks)
    assert wide.conv_pw.weight.shape == (3 * 24, 6, 1, 1) and wide.conv_pwl.groups == 3


def test_channels_last_input_keeps_channels_last():
    blocks = _edges("dsconv")
    wide = widen(blocks)
    x = random_tensor((2, 6, 8, 8), dtype=torch.float64, generator=make_generator(3))
    out = wide(x.to(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert_close_to_reference(out, wide(x), torch.float64)


def test_what_cannot_be_widened_is_refused():
    assert not can_widen(MBConv(6, 6))  # residual: the wide output would not match the input
    assert not can_widen(nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="cannot widen MBConv"):
        widen([MBConv(6, 6), MBConv(6, 6)])
    with pytest.raises(TypeError, match="one type"):
        widen([MBConv(6, 6, noskip=True), DSConv(6, 6, noskip=True)])
    with pytest.raises(ValueError, match="at least one"):
        widen([])


def test_grouped_se_is_independent_ses_side_by_side():
    gen = make_generator(4)
    parts = [randomize_(SqueezeExcite(4, rd_channels=2), gen).double() for _ in range(3)]
    grouped = SqueezeExcite(12, rd_channels=6, groups=3).double()
    with torch.no_grad():
        for name, p in grouped.named_parameters():
            p.copy_(torch.cat([dict(s.named_parameters())[name] for s in parts], 0))
    x = random_tensor((2, 12, 5, 5), dtype=torch.float64, generator=gen)
    ref = torch.cat([s(xs) for s, xs in zip(parts, x.split(4, 1))], 1)
    assert_close_to_reference(grouped(x), ref, torch.float64)
    with pytest.raises(ValueError, match="groups=5 must divide"):
        SqueezeExcite(12, rd_channels=6, groups=5)
