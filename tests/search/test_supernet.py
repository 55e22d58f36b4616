"""Supernet: MixedOp semantics, disjoint weights/alphas, shapes, PC-DARTS, dtype/layout."""
import pytest
import torch

from dartsfast.search.space import DEFAULT_OPS
from dartsfast.search.supernet import ArchParams, MixedOp, SearchModel, Supernet
from dartsfast.testing import assert_close_to_reference


def tiny_model(ops=DEFAULT_OPS, partial_channels=1, edge_normalization=False, in_channels=1):
    torch.manual_seed(0)
    net = Supernet(8, 10, 3, ops, in_channels=in_channels, partial_channels=partial_channels)
    return SearchModel(net, ArchParams(len(ops), edge_normalization=edge_normalization))


def test_mixed_op_is_the_weighted_sum_of_its_candidates_and_none_adds_nothing():
    torch.manual_seed(1)
    op = MixedOp(4, 1, ["dsconv_3x3", "none", "skip_connect"]).double().eval()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    w = torch.softmax(torch.randn(3, dtype=torch.float64), 0)
    expected = w[0] * op.ops[0](x) + w[2] * x   # 'none' keeps its weight w[1] but contributes 0
    assert_close_to_reference(op(x, w), expected, torch.float64)
    assert len(op.ops) == 2


def test_weights_and_alphas_are_disjoint_and_cover_everything():
    model = tiny_model(edge_normalization=True)
    weight_ids = {id(p) for p in model.weights()}
    alpha_ids = {id(p) for p in model.alphas()}
    assert not weight_ids & alpha_ids
    assert weight_ids | alpha_ids == {id(p) for p in model.parameters()}
    assert len(alpha_ids) == 4  # alphas and betas, normal and reduce


def test_forward_backward_shapes_and_gradients_reach_alphas():
    model = tiny_model()
    logits = model(torch.randn(4, 1, 16, 16))
    assert logits.shape == (4, 10)
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.alphas())


def test_reduction_cells_sit_at_one_and_two_thirds():
    net = Supernet(4, 10, 6, DEFAULT_OPS, in_channels=1)
    assert [c.reduction for c in net.cells] == [False, False, True, False, True, False]


def test_partial_channels_shapes_and_divisibility():
    model = tiny_model(partial_channels=2, edge_normalization=True)
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(ValueError, match="partial_channels=3 must divide"):
        MixedOp(8, 1, DEFAULT_OPS, partial_channels=3)


def test_channels_last_and_bf16_autocast_run():
    model = tiny_model(ops=("dsconv_3x3", "mbconv_3x3", "fused_mbconv_3x3", "skip_connect", "max_pool_3x3", "none"))
    x = torch.randn(2, 1, 16, 16).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in model.alphas())


def test_genotype_of_model_uses_its_op_names():
    g = tiny_model().genotype()
    assert {op for op, _ in g.normal + g.reduce} <= set(DEFAULT_OPS) - {"none"}


@pytest.mark.parametrize("kwargs, message", [({"layers": 2}, "at least 3"), ({"channels": 0}, "channels"),
                                             ({"ops": ["nope"]}, "unknown op")])
def test_bad_supernet_arguments(kwargs, message):
    args = dict(channels=8, num_classes=10, layers=3, op_names=kwargs.pop("ops", DEFAULT_OPS))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Supernet(**args)
