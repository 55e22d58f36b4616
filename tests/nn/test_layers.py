"""Tests of dartsfast.nn's layers: DropPath and SqueezeExcite (CPU, small shapes)."""
import torch
from block_helpers import randomize_

from dartsfast.nn import DropPath, SqueezeExcite
from dartsfast.testing import assert_close_to_reference, make_generator, random_tensor

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


# ----------------------------------------------------------------------------- SE

def test_squeeze_excite_formula():
    se = randomize_(SqueezeExcite(12, rd_ratio=0.25).double(), make_generator(19))
    assert se.conv_reduce.out_channels == 3
    x = random_tensor((2, 12, 5, 3), dtype=torch.float64, generator=make_generator(20))
    s = x.mean((2, 3)) @ se.conv_reduce.weight.flatten(1).T + se.conv_reduce.bias
    s = torch.sigmoid(torch.nn.functional.silu(s) @ se.conv_expand.weight.flatten(1).T + se.conv_expand.bias)
    assert_close_to_reference(se(x), x * s[:, :, None, None], torch.float64)
    assert SqueezeExcite(12, rd_channels=5).conv_reduce.out_channels == 5
