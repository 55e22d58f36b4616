"""The search's latency term (issue 18) on hand-written tables: its value and gradient against
a hand computation in float64, each form, and the refusal of a table made for another run."""
import math
import types

import pytest
import torch

from dartsfast.search.latency_lut import Lut, lut_key
from dartsfast.search.latency_setup import lut_differences
from dartsfast.search.latency_term import LatencyTerm, latency_matrices
from dartsfast.search.positions import edge_positions
from dartsfast.search.space import Genotype, derive_genotype

OPS = ("dsconv_3x3", "skip_connect", "none")
DEV = "test-device"


def tiny_lut(slow=1.0, device=DEV, dtype="float32", layout="nchw", drop=None):
    """Every op at every position of Supernet(C=4, layers=3, 8x8); dsconv costs ``slow`` ms."""
    entries = {}
    for cell in edge_positions(4, 3, 8):
        for c, h, w, s in cell.edges:
            for op in OPS:
                if (op, c, h, s) == drop:
                    continue
                ms = {"dsconv_3x3": slow * c / 4, "skip_connect": 0.01 * s, "none": 0.0}[op]
                entries[lut_key(op, c, c, h, w, s, dtype, layout, device)] = dict(
                    op=op, c_in=c, c_out=c, h=h, w=w, stride=s, count=1, median_s=ms / 1e3, iqr_s=0.0, n=1,
                    measured=op != "none")
    header = dict(device_name=device, dtype=dtype, layout=layout, mode="training", space=list(OPS))
    return Lut(header, entries)


def term(**kw):
    cells = edge_positions(4, 3, 8)
    normal, reduce, missing = latency_matrices(tiny_lut(), cells, OPS)
    assert not missing
    return LatencyTerm(normal, reduce, OPS, **kw), normal, reduce


def test_matrices_sum_the_lut_over_the_cells_of_each_type():
    _, normal, reduce = term()
    # One normal cell (C=4, stride 1) and two reductions (C=8 and 16): edges from the two
    # inputs are stride 2 (rows 0,1,2,3,5,6,9,10 of 14), the rest stride 1.
    assert torch.equal(normal[:, 0], torch.full((14,), 1.0, dtype=torch.float64))
    assert normal[:, 1].tolist() == pytest.approx([0.01] * 14)
    stride2 = {0, 1, 2, 3, 5, 6, 9, 10}
    assert reduce[:, 0].tolist() == pytest.approx([2.0 + 4.0] * 14)  # C=8 and C=16 cells
    assert reduce[:, 1].tolist() == pytest.approx([0.04 if e in stride2 else 0.02 for e in range(14)])
    assert (normal[:, 2] == 0).all() and (reduce[:, 2] == 0).all()


def test_gradient_is_the_softmax_jacobian_by_hand():
    t, normal, reduce = term(weight=1.0, const_ms=0.5)
    g = torch.Generator().manual_seed(0)
    an = torch.randn(14, 3, dtype=torch.float64, generator=g, requires_grad=True)
    ar = torch.randn(14, 3, dtype=torch.float64, generator=g, requires_grad=True)
    e = t.expected_ms_of(an, ar)
    gn, gr = torch.autograd.grad(e, [an, ar])
    for alpha, mat, grad in ((an, normal, gn), (ar, reduce, gr)):
        rows = alpha.tolist()
        for i, row in enumerate(rows):
            z = sum(math.exp(x) for x in row)
            p = [math.exp(x) / z for x in row]
            mean = sum(pk * mat[i, k].item() for k, pk in enumerate(p))
            for k in range(3):
                assert grad[i, k].item() == pytest.approx(p[k] * (mat[i, k].item() - mean), rel=1e-12, abs=1e-15)
    value = 0.5 + sum((torch.softmax(a, -1) * m).sum().item() for a, m in ((an, normal), (ar, reduce)))
    assert e.item() == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("form", ["proxyless", "constraint", "fbnet"])
def test_each_form_value_and_gradient(form):
    lam, target = 0.7, 5.0
    t, _, _ = term(weight=lam, form=form, target_ms=target)
    an = torch.randn(14, 3, dtype=torch.float64, requires_grad=True)
    ar = torch.randn(14, 3, dtype=torch.float64, requires_grad=True)
    e = t.expected_ms_of(an, ar)
    (de_n, de_r) = torch.autograd.grad(e, [an, ar], retain_graph=True)
    E = e.item()
    if form == "fbnet":
        ce = torch.tensor(1.3, dtype=torch.float64)
        value = ce * t.factor(an, ar)
        expected = 1.3 * (E / target) ** lam
        # d/dα of CE·(E/T)^λ = CE·λ·(E/T)^λ / E · dE/dα
        scale = 1.3 * lam * (E / target) ** lam / E
    elif form == "proxyless":
        value, expected, scale = t.loss(an, ar), lam * E, lam
    else:  # the hinge on the derived network, the mixture's gradient
        value = t.loss(an, ar)
        D = t.genotype_latency_ms(derive_genotype(torch.softmax(an, -1), torch.softmax(ar, -1), OPS))
        expected = lam * max(D - target, 0.0) / target
        scale = lam / target if D > target else 0.0
    assert value.item() == pytest.approx(expected, rel=1e-12)
    gn, gr = torch.autograd.grad(value, [an, ar])
    torch.testing.assert_close(gn, scale * de_n, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(gr, scale * de_r, rtol=1e-10, atol=1e-14)


def test_constraint_is_zero_below_the_target_and_needs_one():
    t, _, _ = term(weight=1.0, form="constraint", target_ms=1e6)
    a = torch.zeros(14, 3, dtype=torch.float64, requires_grad=True)
    assert t.loss(a, a).item() == 0.0
    with pytest.raises(ValueError, match="target"):
        term(weight=1.0, form="constraint")


@pytest.mark.parametrize("seed", range(5))
def test_derived_latency_on_the_device_is_the_derived_genotypes(seed):
    """The step's derivation (tensor ops, no host sync) against derive_genotype + the hand sum."""
    t, _, _ = term(const_ms=0.25)
    g = torch.Generator().manual_seed(seed)
    wn, wr = (torch.softmax(torch.randn(14, 3, dtype=torch.float64, generator=g), -1) for _ in range(2))
    expected = t.genotype_latency_ms(derive_genotype(wn, wr, OPS))
    assert t.derived_ms(wn, wr).item() == pytest.approx(expected, rel=1e-12)


def test_constraint_pushes_while_the_derived_network_is_over_the_target():
    """Mixture under the target, argmax network over it: the hinge is on, with the mixture's
    gradient (straight through). On the mixture alone it would be off (the sweep's miss)."""
    lam = 2.0
    t, normal, reduce = term(weight=lam, form="constraint", target_ms=1.0)
    # dsconv barely strongest on every edge: the derived network keeps dsconv everywhere
    an = torch.tensor([[0.01, 0.0, 0.0]] * 14, dtype=torch.float64, requires_grad=True)
    ar = an.detach().clone().requires_grad_()
    mixture = t.expected_ms_of(an, ar)
    derived = t.derived_ms(torch.softmax(an, -1), torch.softmax(ar, -1)).item()
    t.target_ms = (mixture.item() + derived) / 2
    assert mixture.item() < t.target_ms < derived
    value = t.loss(an, ar)
    assert value.item() == pytest.approx(lam * (derived - t.target_ms) / t.target_ms, rel=1e-12)
    gn, gr = torch.autograd.grad(value, [an, ar])
    de_n, de_r = torch.autograd.grad(t.expected_ms_of(an, ar), [an, ar])
    torch.testing.assert_close(gn, lam / t.target_ms * de_n, rtol=1e-12, atol=0)
    torch.testing.assert_close(gr, lam / t.target_ms * de_r, rtol=1e-12, atol=0)
    assert gn[:, 0].gt(0).all()  # dsconv (the slow op) pushed down on every edge


def test_the_hinge_is_on_the_derived_network_not_the_mixture():
    """Mixture over the target, the network handed out under it: nothing to push (pushing on
    the mixture drove the third sweep's network to 0.59x its target, all skip_connect)."""
    t, _, _ = term(weight=1.0, form="constraint", target_ms=1.0)
    # skip_connect barely strongest on every edge: a cheap network, a mixture with dsconv in it
    an = torch.tensor([[0.0, 0.01, 0.0]] * 14, dtype=torch.float64, requires_grad=True)
    ar = an.detach().clone().requires_grad_()
    mixture = t.expected_ms_of(an, ar).item()
    derived = t.derived_ms(torch.softmax(an, -1), torch.softmax(ar, -1)).item()
    t.target_ms = (mixture + derived) / 2
    assert derived < t.target_ms < mixture
    value = t.loss(an, ar)
    assert value.item() == 0.0
    assert all(g.abs().max() == 0 for g in torch.autograd.grad(value, [an, ar]))


def test_the_multiplier_grows_over_the_target_and_shrinks_under_it():
    """Dual ascent by hand: μ ← max(0, μ + η·clip(x, ±1)) once per architecture step, the term
    λ·(1 + μ)·relu(x): pushed harder the longer the network stays over the target."""
    lam, eta = 2.0, 0.5
    t, _, _ = term(weight=lam, form="constraint", target_ms=1.0, dual_lr=eta)
    arch = types.SimpleNamespace(alphas_normal=torch.zeros(14, 3, dtype=torch.float64, requires_grad=True),
                                 alphas_reduce=torch.zeros(14, 3, dtype=torch.float64, requires_grad=True))
    model = types.SimpleNamespace(arch=arch)
    derived = t.derived_ms(torch.softmax(arch.alphas_normal, -1), torch.softmax(arch.alphas_reduce, -1)).item()

    def mixture_grad():
        return torch.autograd.grad(t.expected_ms_of(arch.alphas_normal, arch.alphas_reduce), [arch.alphas_normal])[0]

    # Over the target twice: μ = η·x after the first step, 2·η·x after the second.
    t.target_ms = 0.8 * derived
    x, mu = derived / t.target_ms - 1, 0.0
    for _ in range(2):
        value = t.penalty(model)
        assert value.item() == pytest.approx(lam * (1 + mu) * x, rel=1e-12)
        gn, = torch.autograd.grad(value, [arch.alphas_normal])
        torch.testing.assert_close(gn, lam * (1 + mu) / t.target_ms * mixture_grad(), rtol=1e-12, atol=1e-15)
        mu += eta * x
        assert t.multiplier.item() == pytest.approx(mu, rel=1e-12)
    # Under the target: no push at all, and μ shrinks by η·|x|.
    t.target_ms = 1.2 * derived
    x = derived / t.target_ms - 1
    value = t.penalty(model)
    assert value.item() == 0.0 and torch.autograd.grad(value, [arch.alphas_normal])[0].abs().max() == 0
    mu += eta * x
    assert t.multiplier.item() == pytest.approx(mu, rel=1e-12) and mu > 0
    # Far over (x = 9): one step adds η·1, not η·9. Far under: spent, never negative.
    t.target_ms = derived / 10
    t.penalty(model)
    assert t.multiplier.item() == pytest.approx(mu + eta, rel=1e-12)
    t.target_ms = derived * 1e3
    for _ in range(10):
        t.penalty(model)
    assert t.multiplier.item() == 0.0
    # η = 0: λ alone, μ stays 0.
    fixed, _, _ = term(weight=lam, form="constraint", target_ms=0.1, dual_lr=0.0)
    fixed.penalty(model)
    assert fixed.multiplier.item() == 0.0
    with pytest.raises(ValueError, match="step size"):
        term(weight=lam, form="constraint", target_ms=1.0, dual_lr=-1.0)


def test_the_multiplier_is_checkpointed_and_reported(tmp_path):
    """A constraint search resumed after epoch 1 ends with the bits (alphas, μ) of one never stopped."""
    from dartsfast.search.loop import search
    from tests.search.test_loop import tiny

    lut = _search_lut(tmp_path / "lut.json", slow_op="dsconv_3x3")
    common = dict(latency_lut=lut, latency_weight=1.0, latency_form="constraint", latency_target_ms=1.0,
                  alpha_lr=0.1, epochs=2)
    whole = search(tiny(tmp_path / "whole", **common))

    def stop(epoch, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(tiny(tmp_path / "cut", **common), on_epoch_end=stop)
    resumed = search(tiny(tmp_path / "cut", resume=True, **common))
    mus = [r["latency_multiplier"] for r in whole.history]
    assert 0 < mus[0] < mus[1]  # the slow op's network stays over a 1 ms target: μ keeps growing
    assert [r["latency_multiplier"] for r in resumed.history] == mus
    assert torch.equal(resumed.latency.multiplier, whole.latency.multiplier)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_matrices_add_the_per_op_overhead_to_ops_that_run():
    lut = tiny_lut()
    lut.header["per_op_s"] = 0.1e-3
    normal, reduce, _ = latency_matrices(lut, edge_positions(4, 3, 8), OPS)
    _, base_normal, base_reduce = term()
    stride2 = [e in {0, 1, 2, 3, 5, 6, 9, 10} for e in range(14)]
    # dsconv: +0.1 ms per cell (1 normal, 2 reduce cells); skip_connect only where it is a
    # FactorizedReduce (stride 2), not where it is an identity; 'none' never
    torch.testing.assert_close(normal[:, 0], base_normal[:, 0] + 0.1)
    torch.testing.assert_close(reduce[:, 0], base_reduce[:, 0] + 0.2)
    torch.testing.assert_close(normal[:, 1], base_normal[:, 1])
    torch.testing.assert_close(reduce[:, 1], base_reduce[:, 1] + torch.tensor(stride2, dtype=torch.float64) * 0.2)
    assert (normal[:, 2] == 0).all() and (reduce[:, 2] == 0).all()


def test_genotype_latency_sums_the_kept_edges():
    t, normal, reduce = term(const_ms=0.25)
    cell = (("dsconv_3x3", 0), ("skip_connect", 1), ("dsconv_3x3", 2), ("skip_connect", 0),
            ("skip_connect", 3), ("dsconv_3x3", 1), ("dsconv_3x3", 4), ("skip_connect", 2))
    g = Genotype(cell, (2, 3, 4, 5), cell, (2, 3, 4, 5))
    rows = [0, 1, 4, 2, 8, 6, 13, 11]  # node offsets 0, 2, 5, 9 + input index
    ks = [0 if op == "dsconv_3x3" else 1 for op, _ in cell]
    expected = 0.25 + sum(normal[r, k].item() + reduce[r, k].item() for r, k in zip(rows, ks))
    assert t.genotype_latency_ms(g) == pytest.approx(expected, rel=1e-12)


def test_a_table_for_another_run_is_refused_naming_each_difference():
    cells = edge_positions(4, 3, 8)
    run = dict(device_name=DEV, dtype="float32", layout="nchw", ops=OPS, cells=cells)
    assert lut_differences(tiny_lut(), **run) == []
    assert "device 'H100'" in lut_differences(tiny_lut(device="H100"), **run)[0]
    assert "dtype 'bfloat16'" in lut_differences(tiny_lut(dtype="bfloat16"), **run)[0]
    assert "layout 'channels_last'" in lut_differences(tiny_lut(layout="channels_last"), **run)[0]
    (diff,) = lut_differences(tiny_lut(drop=("dsconv_3x3", 8, 8, 2)), **run)
    assert "no entry for dsconv_3x3 C=8 8x8 stride 2" in diff
    (diff,) = lut_differences(tiny_lut(), **{**run, "ops": (*OPS, "max_pool_3x3")})
    assert "space lacks op(s) max_pool_3x3" in diff


# ----------------------------------------------------------------------------- in a search

def _search_lut(path, slow_op=None, device_name=None):
    """A table of the tiny search (tests/search/test_loop.py) for this CPU; ``slow_op`` costs 100 ms."""
    import json

    from dartsfast.search.latency_lut import SCHEMA
    from dartsfast.timing import environment_info
    from tests.search.test_loop import CHEAP_OPS

    name = device_name or environment_info("cpu")["device_name"]
    entries = {}
    for cell in edge_positions(4, 3, 8):
        for c, h, w, s in cell.edges:
            for op in CHEAP_OPS:
                ms = 0.0 if op == "none" else (100.0 if op == slow_op else 0.1)
                entries[lut_key(op, c, c, h, w, s, "float32", "nchw", name)] = dict(
                    op=op, c_in=c, c_out=c, h=h, w=w, stride=s, count=1, median_s=ms / 1e3, iqr_s=0.0, n=1,
                    measured=True)
    header = dict(device_name=name, dtype="float32", layout="nchw", mode="inference", space=list(CHEAP_OPS))
    path.write_text(json.dumps({"schema": SCHEMA, "header": header, "entries": entries}))
    return str(path)


def test_lambda_zero_is_bit_identical_and_reports_latency(tmp_path):
    from dartsfast.search.loop import search
    from tests.search.test_loop import tiny

    plain = search(tiny(None, epochs=1))
    lut = _search_lut(tmp_path / "lut.json")
    with_lut = search(tiny(None, epochs=1, latency_lut=lut, latency_weight=0.0))
    for a, b in zip(plain.model.state_dict().values(), with_lut.model.state_dict().values()):
        assert torch.equal(a, b)
    assert "expected_latency_ms" not in plain.history[-1]
    rec = with_lut.history[-1]
    assert rec["expected_latency_ms"] > 0 and rec["genotype_latency_ms"] > 0 and rec["latency_lut_mode"] == "inference"


def test_a_large_weight_drives_the_slow_op_down(tmp_path):
    from dartsfast.search.loop import search
    from tests.search.test_loop import CHEAP_OPS, tiny

    lut = _search_lut(tmp_path / "lut.json", slow_op="dsconv_3x3")
    k = CHEAP_OPS.index("dsconv_3x3")
    base = search(tiny(None, epochs=1, latency_lut=lut, alpha_lr=0.1)).history[-1]
    pushed = search(tiny(None, epochs=1, latency_lut=lut, latency_weight=10.0, alpha_lr=0.1)).history[-1]
    mean = [sum(row[k] for row in r["alphas_normal"]) / 14 for r in (base, pushed)]
    assert mean[1] < mean[0] - 0.05
    assert pushed["expected_latency_ms"] < base["expected_latency_ms"]


def test_a_table_for_another_device_is_refused_and_forced(tmp_path):
    from dartsfast.search.loop import search
    from tests.search.test_loop import tiny

    lut = _search_lut(tmp_path / "lut.json", device_name="NVIDIA H100")
    with pytest.raises(ValueError, match="device 'NVIDIA H100'"):
        search(tiny(None, epochs=1, latency_lut=lut))
    with pytest.warns(UserWarning, match="used anyway"):
        search(tiny(None, epochs=1, latency_lut=lut, latency_force=True))


def test_auto_builds_once_and_resume_reuses_it(tmp_path, monkeypatch):
    import json

    from dartsfast.search import latency_setup
    from dartsfast.search.loop import search
    from tests.search.test_loop import tiny

    monkeypatch.setattr(latency_setup, "AUTO_WARMUP", 0)
    monkeypatch.setattr(latency_setup, "AUTO_REPEATS", 1)
    real, calls = latency_setup.build_latency_lut, []

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(latency_setup, "build_latency_lut", counting)
    def stop(epoch, record):  # a search killed after its first epoch
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(tiny(tmp_path, epochs=2, latency_lut="auto"), on_epoch_end=stop)
    assert len(calls) == 1
    saved = json.loads((tmp_path / latency_setup.AUTO_FILE).read_text())
    assert saved["header"]["space"] == list(tiny(None).ops) and saved["header"]["repeats"] == 1
    history = search(tiny(tmp_path, epochs=2, latency_lut="auto", resume=True)).history
    assert len(calls) == 1 and "expected_latency_ms" in history[-1]


@pytest.mark.parametrize("form, order", [("fbnet", 1), ("fbnet", 2), ("constraint", 1)])
def test_other_forms_push_the_slow_op_down_in_a_search(tmp_path, form, order):
    from dartsfast.search.loop import search
    from tests.search.test_loop import CHEAP_OPS, tiny

    lut = _search_lut(tmp_path / "lut.json", slow_op="dsconv_3x3")
    k = CHEAP_OPS.index("dsconv_3x3")
    common = dict(epochs=1, latency_lut=lut, alpha_lr=0.1, order=order, latency_form=form, latency_target_ms=1.0)
    base = search(tiny(None, **common)).history[-1]
    pushed = search(tiny(None, **{**common, "latency_weight": 5.0})).history[-1]
    mean = [sum(row[k] for row in r["alphas_normal"]) / 14 for r in (base, pushed)]
    assert mean[1] < mean[0] - 0.05


def test_latency_and_beta_decay_penalties_add_up():
    from dartsfast.search.regularizers import sum_penalties

    def one(m):
        return torch.tensor(2.0)

    def two(m):
        return torch.tensor(3.0)

    assert sum_penalties(None, None) is None and sum_penalties(one, None) is one
    assert sum_penalties(one, two)(None).item() == 5.0
