"""A search that decides (issue 17): warm-up epochs, the alpha statistics in history, and
β-DARTS's beta-decay collapse guard, each against an independent computation."""
import math

import pytest
import torch

from dartsfast.search.alpha_stats import (
    count_parameter_free,
    derived_edge_weights,
    edge_entropy,
    genotype_changes,
    is_parameter_free,
)
from dartsfast.search.bilevel import architecture_step
from dartsfast.search.loop import search
from dartsfast.search.regularizers import beta_decay_loss, beta_decay_weight
from dartsfast.search.space import Genotype, derive_genotype, num_edges
from dartsfast.search.supernet import ArchParams, SearchModel, Supernet
from tests.search.test_loop import CHEAP_OPS, tiny

OPS = ("dsconv_3x3", "skip_connect", "max_pool_3x3", "none")


def random_weights(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(3 * torch.randn(num_edges(), len(OPS), generator=g, dtype=torch.float64), -1)


# ----------------------------------------------------------------------------- statistics

def test_edge_entropy_is_shannon_entropy_in_nats():
    w = random_weights(0)
    expected = [-sum(p * math.log(p) for p in row) for row in w.tolist()]
    assert edge_entropy(w) == pytest.approx(expected, rel=1e-12)
    assert edge_entropy(torch.full((3, 4), 0.25)) == pytest.approx([math.log(4)] * 3)
    assert edge_entropy(torch.eye(4)) == pytest.approx([0.0] * 4, abs=1e-12)


def test_derived_edge_weights_are_the_kept_ops_weights():
    for seed in range(5):
        w = random_weights(seed)
        genotype = derive_genotype(w, w, OPS)
        # Independently: a derived edge (op, j) of node i sits in row offset(i) + j.
        offsets = [sum(2 + k for k in range(i)) for i in range(4)]
        expected = [w[offsets[e // 2] + j, OPS.index(op)].item() for e, (op, j) in enumerate(genotype.normal)]
        assert derived_edge_weights(w, OPS, 4) == expected
        # The kept op is its edge's strongest non-'none' op.
        for e, (op, j) in enumerate(genotype.normal):
            row = w[offsets[e // 2] + j, :3]
            assert w[offsets[e // 2] + j, OPS.index(op)] == row.max()


def test_parameter_free_ops_are_counted_from_the_built_ops():
    assert [is_parameter_free(op) for op in OPS[:3]] == [False, True, True]
    assert not is_parameter_free("sep_conv_3x3") and is_parameter_free("avg_pool_3x3")
    cell = (("skip_connect", 0), ("dsconv_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
            ("dsconv_3x3", 0), ("dsconv_3x3", 1), ("avg_pool_3x3", 3), ("sep_conv_3x3", 4))
    other = tuple(("dsconv_3x3", j) for _, j in cell)
    g = Genotype(cell, (2, 3, 4, 5), other, (2, 3, 4, 5))
    assert count_parameter_free(g) == 4
    g2 = Genotype(other, (2, 3, 4, 5), other, (2, 3, 4, 5))
    assert genotype_changes(g, None) == 16 and genotype_changes(g, g) == 0
    assert genotype_changes(g2, g) == 5  # the normal cell's 5 non-dsconv edges became dsconv
    swapped = Genotype(tuple(e for i in range(0, 8, 2) for e in (cell[i + 1], cell[i])), (2, 3, 4, 5),
                       other, (2, 3, 4, 5))
    assert genotype_changes(swapped, g) == 0  # a node's two edges in the other order: the same node


# ----------------------------------------------------------------------------- beta decay

def test_beta_decay_gradient_is_lambda_softmax_over_edges():
    a = torch.randn(14, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(14, 5, dtype=torch.float64, requires_grad=True)
    lam = 7.0
    ga, gb = torch.autograd.grad(lam * beta_decay_loss([a, b]), [a, b])
    # By hand: d/dα_ek of (λ/28) Σ_e log Σ_k exp α_ek = (λ/28) softmax(α_e)_k.
    for alpha, grad in ((a, ga), (b, gb)):
        rows = [[math.exp(x) / sum(math.exp(y) for y in row) for x in row] for row in alpha.tolist()]
        torch.testing.assert_close(grad, lam / 28 * torch.tensor(rows, dtype=torch.float64), rtol=1e-12, atol=0)
    value = sum(math.log(sum(math.exp(x) for x in row)) for row in a.tolist() + b.tolist()) / 28
    assert beta_decay_loss([a, b]).item() == pytest.approx(value, rel=1e-12)


def test_beta_decay_ramp_and_its_errors():
    assert [beta_decay_weight(25, e, 50) for e in (0, 1, 49)] == [0.0, 0.5, 24.5]
    with pytest.raises(ValueError, match="epoch"):
        beta_decay_weight(1, 5, 5)
    with pytest.raises(ValueError, match="alpha"):
        beta_decay_loss([])


def test_architecture_step_adds_the_penalty_gradient_to_the_hypergradient():
    torch.manual_seed(0)
    net = Supernet(4, 3, 3, OPS, in_channels=1, edge_batching=False).double()
    model = SearchModel(net, ArchParams(len(OPS), init_scale=0.5)).double()
    x, y = torch.randn(6, 1, 8, 8, dtype=torch.float64), torch.randint(0, 3, (6,))
    before = [a.detach().clone() for a in model.alphas()]

    def loss_fn(m, xv, yv):
        return torch.nn.functional.cross_entropy(m(xv), yv)

    def penalty(m):
        return 3.0 * beta_decay_loss([m.arch.alphas_normal, m.arch.alphas_reduce])

    # Reference: one backward of validation loss + penalty. (Its pass moves the shared net's
    # BN running statistics; train-mode BN normalises by the batch, so the α gradients do not care.)
    ref_model = SearchModel(net, ArchParams(len(OPS), init_scale=0.5)).double()
    ref_model.arch.load_state_dict(model.arch.state_dict())
    alphas = ref_model.alphas()
    expected = torch.autograd.grad(loss_fn(ref_model, x, y) + penalty(ref_model), alphas)
    opt = torch.optim.SGD(model.alphas(), lr=1.0)
    architecture_step(model, opt, loss_fn, x, y, penalty=penalty)
    for a0, a1, g in zip(before, model.alphas(), expected):
        torch.testing.assert_close(a0 - a1.detach(), g, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- in a search

def test_warmup_epochs_leave_the_alphas_at_their_initial_values():
    config = tiny(None, epochs=2, warmup_epochs=1)
    history = search(config).history
    init = ArchParams(len(CHEAP_OPS), generator=torch.Generator().manual_seed(config.seed))
    expected = torch.softmax(init.alphas_normal.detach(), -1).float()
    assert torch.equal(torch.tensor(history[0]["alphas_normal"]), expected)
    assert not torch.equal(torch.tensor(history[1]["alphas_normal"]), expected)


def test_beta_decay_starts_at_zero_then_changes_the_alphas():
    plain = search(tiny(None, epochs=2)).history
    guarded = search(tiny(None, epochs=2, beta_decay=20.0)).history
    assert guarded[0]["alphas_normal"] == plain[0]["alphas_normal"]  # λ_0 = 0: the same first epoch
    assert guarded[1]["alphas_normal"] != plain[1]["alphas_normal"]


def test_history_records_how_decided_the_search_is():
    history = search(tiny(None, epochs=2)).history
    for r in history:
        wn, wr = torch.tensor(r["alphas_normal"]), torch.tensor(r["alphas_reduce"])
        assert r["entropy_normal"] == pytest.approx(edge_entropy(wn)) and len(r["entropy_reduce"]) == 14
        g = Genotype.from_dict(r["genotype"])
        kept = derived_edge_weights(wn, CHEAP_OPS, 4) + derived_edge_weights(wr, CHEAP_OPS, 4)
        assert r["derived_weight"] == pytest.approx(sum(kept) / 16)
        assert r["parameter_free_ops"] == sum(op in ("skip_connect", "avg_pool_3x3") for op, _ in g.normal + g.reduce)
    assert history[0]["genotype_changes"] == 16
    assert history[1]["genotype_changes"] == genotype_changes(Genotype.from_dict(history[1]["genotype"]),
                                                              Genotype.from_dict(history[0]["genotype"]))


def test_bad_guard_settings_are_named():
    with pytest.raises(ValueError, match="warmup_epochs"):
        tiny(None, epochs=2, warmup_epochs=2)
    with pytest.raises(ValueError, match="beta_decay"):
        tiny(None, beta_decay=-1.0)


def test_the_small_data_alpha_lr_commits_where_dartss_default_does_not():
    # The main job's recipe (one warm-up epoch, then Adam at a learning rate for ~100 steps)
    # on a tiny synthetic run: 9 architecture steps are enough to commit at 0.3, while
    # DARTS's 3e-4 (meant for ~20,000 steps) leaves the alphas uniform to ~1e-3.
    decided = search(tiny(None, epochs=4, warmup_epochs=1, alpha_lr=0.3)).history[-1]
    default = search(tiny(None, epochs=4, warmup_epochs=1, alpha_lr=3e-4)).history[-1]
    assert decided["derived_weight"] >= 0.40
    assert default["derived_weight"] < 0.26
    mean_entropy = [sum(r["entropy_normal"] + r["entropy_reduce"]) / 28 for r in (decided, default)]
    assert mean_entropy[0] < mean_entropy[1] <= math.log(4)
