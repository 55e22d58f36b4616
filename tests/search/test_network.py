"""dartsfast.search.network: the discrete network a genotype describes, and its drop path.

Tiny configs throughout (channels 4, layers 3, 8-16 px) so the file runs in seconds on 2 cores.
"""
import pytest
import torch
from sample_genotypes import GENO_ALL, GENO_FAST, GENO_SKIP

from dartsfast.search.network import DiscreteCell, DiscreteNetwork


def _tiny_net(genotype=GENO_ALL, **kw):
    args = dict(channels=4, num_classes=10, layers=3, in_channels=3)
    args.update(kw)
    return DiscreteNetwork(genotype, **args)


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("layers", [3, 5])
def test_network_shapes_and_reductions(in_channels, layers):
    torch.manual_seed(0)
    net = _tiny_net(in_channels=in_channels, layers=layers, num_classes=7)
    assert net.reduction_layers == (layers // 3, 2 * layers // 3)
    sizes = []
    hooks = [c.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape))) for c in net.cells]
    x = torch.randn(2, in_channels, 16, 16)
    for mode in (True, False):
        sizes.clear()
        out = net.train(mode)(x)
        assert out.shape == (2, 7) and torch.isfinite(out).all()
    for h in hooks:
        h.remove()
    side, c = 16, 4
    for i, shape in enumerate(sizes):
        if i in net.reduction_layers:
            side, c = side // 2, c * 2
        assert shape == (2, 4 * c, side, side), f"cell {i}"
    assert side == 4


def test_auxiliary_head_train_and_eval():
    torch.manual_seed(0)
    net = _tiny_net(auxiliary=True, num_classes=5)
    x = torch.randn(3, 3, 16, 16)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (3, 5)
    (logits.sum() + aux.sum()).backward()
    assert net.auxiliary_head.classifier.weight.grad is not None
    out = net.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 5)
    # The head also works on the 1x1 maps of 8 px inputs (adaptive pooling).
    logits, aux = net.train()(torch.randn(2, 3, 8, 8))
    assert aux.shape == (2, 5)


def test_channels_last_matches_nchw():
    torch.manual_seed(0)
    net = _tiny_net().eval()
    x = torch.randn(2, 3, 16, 16)
    ref = net(x)
    net_cl = net.to(memory_format=torch.channels_last)
    out = net_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_bad_network_arguments():
    with pytest.raises(ValueError, match="layers"):
        DiscreteNetwork(GENO_FAST, layers=0)
    with pytest.raises(TypeError, match="Genotype"):
        DiscreteNetwork({"normal": []})
    with pytest.raises(ValueError, match="drop_path_prob"):
        DiscreteNetwork(GENO_FAST, channels=4, layers=3).drop_path_prob = 1.0


# ----------------------------------------------------------------------------- drop path

def test_drop_path_only_in_training():
    torch.manual_seed(0)
    net = _tiny_net(genotype=GENO_FAST)
    x = torch.randn(8, 3, 16, 16)
    # Train mode with p = 0: BN uses batch statistics, which depend only on x, so two
    # passes agree exactly — any difference with p > 0 comes from drop path alone.
    net.train()
    net.drop_path_prob = 0.0
    torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)
    net.drop_path_prob = 0.3
    a, b = net(x), net(x)
    assert not torch.equal(a, b)
    net.eval()
    torch.testing.assert_close(net(x), net(x), rtol=0, atol=0)


def test_drop_path_skips_identities_and_is_per_sample():
    torch.manual_seed(0)
    # Identity-only normal cell: nothing to drop, even at p = 0.5 in training.
    cell = DiscreteCell(GENO_SKIP, 6, 6, 6, reduction=False, reduction_prev=False, drop_path=0.5).train()
    x0, x1 = torch.randn(4, 6, 8, 8), torch.randn(4, 6, 8, 8)
    torch.testing.assert_close(cell(x0, x1), cell(x0, x1), rtol=0, atol=0)
    # A real op: masks are drawn per sample, so some sample's output changes across passes
    # while the p = 0 cell is exactly repeatable.
    cell = DiscreteCell(GENO_FAST, 6, 6, 6, reduction=False, reduction_prev=False, drop_path=0.5).train()
    outs = [cell(x0, x1) for _ in range(4)]
    assert outs[0].shape == (4, 24, 8, 8)
    assert any(not torch.equal(outs[0][n], o[n]) for o in outs[1:] for n in range(4))
    cell.set_drop_path(0.0)
    torch.testing.assert_close(cell(x0, x1), cell(x0, x1), rtol=0, atol=0)


# ----------------------------------------------------------------------------- shared layout

@pytest.mark.parametrize("layers", [3, 5, 8])
def test_network_and_supernet_share_the_layout(layers):
    # Same stem, same reduction cells, same channels into and out of every cell, same
    # preprocessing: both are built by dartsfast.search.layout.build_cells.
    from dartsfast.search.supernet import Supernet

    discrete = _tiny_net(GENO_FAST, layers=layers)
    supernet = Supernet(4, 10, layers, ("skip_connect", "max_pool_3x3"), in_channels=3)
    assert [c.reduction for c in discrete.cells] == [c.reduction for c in supernet.cells]
    assert [i for i, c in enumerate(discrete.cells) if c.reduction] == list(discrete.reduction_layers)
    # Conv kernels only: the discrete network's BNs are affine, the supernet's are not.
    shapes = lambda net: [tuple(p.shape) for n, p in net.named_parameters()  # noqa: E731
                          if (n.startswith("stem") or ".preprocess" in n) and p.dim() == 4]
    assert shapes(discrete) == shapes(supernet)
    for d, s in zip(discrete.cells, supernet.cells):
        assert type(d.preprocess0) is type(s.preprocess0) and type(d.preprocess1) is type(s.preprocess1)
    assert discrete.classifier.in_features == supernet.classifier.in_features
