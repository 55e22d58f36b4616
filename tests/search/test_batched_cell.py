"""BatchedCell: the same supernet function as the per-edge Cell, from the same seed."""
import pytest
import torch

from dartsfast.search.batched_cell import EdgeFanOut, SharedFanOut, WideFanOut
from dartsfast.search.space import DEFAULT_OPS, num_edges
from dartsfast.search.supernet import BatchedCell, Cell, Supernet
from dartsfast.testing import assert_close_to_reference, make_generator, random_simplex, random_tensor

CLASSIC = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "none", "mbconv_3x3_e2")


def _pair(ops, partial_channels=1, channels=8):
    nets = []
    for batched in (False, True):
        torch.manual_seed(0)
        nets.append(Supernet(channels, 10, 3, ops, in_channels=1, partial_channels=partial_channels,
                             edge_batching=batched))
    return nets


def _alphas(ops, seed, edge_normalization):
    gen = make_generator(seed)
    w = [torch.stack([random_simplex(len(ops), generator=gen) for _ in range(num_edges())]).requires_grad_()
         for _ in range(2)]
    e = [random_tensor((num_edges(),), generator=gen).abs().requires_grad_() for _ in range(2)] \
        if edge_normalization else [None, None]
    return w, e


@pytest.mark.parametrize("ops, partial_channels, edge_normalization", [
    (DEFAULT_OPS, 1, False), (DEFAULT_OPS, 2, True), (DEFAULT_OPS, 2, False), (CLASSIC, 1, True), (CLASSIC, 2, True)])
def test_batched_supernet_matches_the_per_edge_one(ops, partial_channels, edge_normalization):
    per_edge, batched = _pair(ops, partial_channels)
    assert isinstance(batched.cells[0], BatchedCell) and isinstance(per_edge.cells[0], Cell)
    x = random_tensor((3, 1, 12, 12), generator=make_generator(1))
    w, e = _alphas(ops, 2, edge_normalization)
    w2 = [t.detach().clone().requires_grad_() for t in w]
    e2 = [t if t is None else t.detach().clone().requires_grad_() for t in e]
    ref = per_edge(x, w[0], w[1], e[0], e[1])
    out = batched(x, w2[0], w2[1], e2[0], e2[1])
    assert_close_to_reference(out, ref, torch.float32, what="logits")
    g = random_tensor(ref.shape, generator=make_generator(3))
    (ref * g).sum().backward()
    (out * g).sum().backward()
    for a, b in zip(w + [t for t in e if t is not None], w2 + [t for t in e2 if t is not None]):
        assert_close_to_reference(b.grad, a.grad, torch.float32, what="alpha gradient")
    if ops != DEFAULT_OPS:  # shared pool BNs hold one copy of what E per-edge copies hold
        return
    # BatchNorm running statistics moved the same (the batched BNs hold the edges' ones side by side)
    ref_means = torch.cat([b.flatten() for n, b in per_edge.named_buffers() if n.endswith("running_mean")])
    out_means = torch.cat([b.flatten() for n, b in batched.named_buffers() if n.endswith("running_mean")])
    assert ref_means.numel() == out_means.numel()
    assert torch.allclose(ref_means.sort().values, out_means.sort().values, atol=1e-5)


def test_candidates_are_batched_shared_or_kept_per_edge():
    _, batched = _pair(CLASSIC)
    kinds = {type(f).__name__ for cell in batched.cells for state in cell.fanouts for f in state}
    assert kinds == {"WideFanOut", "SharedFanOut", "EdgeFanOut"}
    normal = batched.cells[0]
    # skip_connect, max_pool, avg_pool are parameter-free in a normal cell: one module per state
    assert all(isinstance(state[k], SharedFanOut) for state in normal.fanouts for k in (0, 1, 2))
    assert all(isinstance(state[3], EdgeFanOut) for state in normal.fanouts)   # sep_conv
    assert all(isinstance(state[4], WideFanOut) for state in normal.fanouts)   # mbconv
    # a reduction cell's stride-2 skip_connect is a FactorizedReduce with weights: per edge
    reduce = batched.cells[1]
    assert isinstance(reduce.fanouts[0][0], EdgeFanOut) and isinstance(reduce.fanouts[2][0], SharedFanOut)
    # 5 states feed 4, 4, 3, 2, 1 edges
    assert [state[4].block.conv_pw.out_channels // 16 for state in normal.fanouts] == [4, 4, 3, 2, 1]


def test_batched_channels_last_and_bf16_autocast():
    _, net = _pair(DEFAULT_OPS[:2] + ("skip_connect", "none"))
    net = net.to(memory_format=torch.channels_last)
    w, _ = _alphas(DEFAULT_OPS, 4, False)
    x = random_tensor((2, 1, 12, 12), generator=make_generator(5)).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, w[0], w[1])
    out.float().sum().backward()
    assert torch.isfinite(out.float()).all() and all(torch.isfinite(t.grad).all() for t in w)


def test_search_bns_carry_no_batch_counter_and_still_track_statistics():
    _, net = _pair(DEFAULT_OPS)
    assert not [k for k in net.state_dict() if k.endswith("num_batches_tracked")]
    before = net.stem[1].running_mean.clone()
    w, _ = _alphas(DEFAULT_OPS, 6, False)
    net(random_tensor((2, 1, 12, 12), generator=make_generator(7)), w[0], w[1])
    assert not torch.equal(before, net.stem[1].running_mean)
