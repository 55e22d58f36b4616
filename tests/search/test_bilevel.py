"""The architecture step: the second-order hypergradient against the exact one from autograd."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from dartsfast.search.bilevel import (
    architecture_step,
    first_order_hypergradient,
    hypergradient,
    second_order_hypergradient,
)
from dartsfast.testing import make_generator, relative_error


class TinyMixture(nn.Module):
    """logits = Σ_k softmax(α)_k · tanh(x W_k) V: small, smooth, float64."""

    def __init__(self, gen):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 5, 6, dtype=torch.float64, generator=gen) * 0.5)
        self.v = nn.Parameter(torch.randn(6, 4, dtype=torch.float64, generator=gen) * 0.5)
        self.alpha = nn.Parameter(torch.randn(3, dtype=torch.float64, generator=gen))

    def weights(self):
        return [self.w, self.v]

    def alphas(self):
        return [self.alpha]

    def forward(self, x):
        h = torch.tanh(torch.einsum("ni,kij->knj", x, self.w))
        return torch.einsum("k,knj,jc->nc", F.softmax(self.alpha, 0), h, self.v)


def ce(model, x, y):
    return F.cross_entropy(model(x), y)


def batches(gen):
    x_t, x_v = (torch.randn(16, 5, dtype=torch.float64, generator=gen) for _ in range(2))
    y_t, y_v = (torch.randint(0, 4, (16,), generator=gen) for _ in range(2))
    return x_t, y_t, x_v, y_v


def exact_hypergradient(model, x_t, y_t, x_v, y_v, lr, momentum, wd, bufs):
    """d/dα L_val(w − lr·(momentum·buf + ∇w L_train(w, α) + wd·w), α) by autograd through the step."""
    names = ["w", "v"]
    params = {n: getattr(model, n) for n in names}
    params["alpha"] = model.alpha
    g = torch.autograd.grad(F.cross_entropy(functional_call(model, params, (x_t,)), y_t),
                            [params[n] for n in names], create_graph=True)
    stepped = {n: params[n] - lr * (momentum * b + gi + wd * params[n]) for n, gi, b in zip(names, g, bufs)}
    stepped["alpha"] = model.alpha
    val = F.cross_entropy(functional_call(model, stepped, (x_v,)), y_v)
    return torch.autograd.grad(val, [model.alpha])[0]


@pytest.mark.parametrize("momentum, wd", [(0.0, 0.0), (0.9, 3e-4)])
def test_second_order_matches_autograd_through_the_virtual_step(momentum, wd):
    gen = make_generator(0)
    model = TinyMixture(gen)
    x_t, y_t, x_v, y_v = batches(gen)
    lr = 0.5  # large, so the Hessian term is a visible part of the hypergradient
    opt = torch.optim.SGD(model.weights(), lr=lr, momentum=momentum, weight_decay=wd)
    bufs = [torch.zeros_like(p) for p in model.weights()]
    if momentum:  # give the optimiser a momentum buffer, as after some steps
        bufs = [torch.randn(p.shape, dtype=p.dtype, generator=gen) * 0.1 for p in model.weights()]
        for p, b in zip(model.weights(), bufs):
            opt.state[p]["momentum_buffer"] = b.clone()
    before = [p.detach().clone() for p in model.weights()]

    approx = second_order_hypergradient(model, ce, x_t, y_t, x_v, y_v, lr=lr, momentum=momentum,
                                        weight_decay=wd, weight_optimizer=opt)[0]
    exact = exact_hypergradient(model, x_t, y_t, x_v, y_v, lr, momentum, wd, bufs)
    first = first_order_hypergradient(model, ce, x_v, y_v)[0]

    assert all(torch.equal(p, b) for p, b in zip(model.weights(), before)), "weights not restored"
    assert relative_error(approx, exact) < 1e-4
    # The Hessian term matters here: a first-order answer would be far off.
    assert relative_error(first, exact) > 1e-2


def test_architecture_step_moves_only_alphas():
    gen = make_generator(1)
    model = TinyMixture(gen)
    x_t, y_t, x_v, y_v = batches(gen)
    alpha_opt = torch.optim.Adam(model.alphas(), lr=0.1)
    weights_before = [p.detach().clone() for p in model.weights()]
    alpha_before = model.alpha.detach().clone()
    for order in (1, 2):
        architecture_step(model, alpha_opt, ce, x_v, y_v, order=order, x_train=x_t, y_train=y_t, lr=0.1)
    assert not torch.equal(model.alpha, alpha_before)
    assert all(torch.equal(p, b) for p, b in zip(model.weights(), weights_before))
    assert all(p.grad is None for p in model.weights())


def test_bad_order_and_missing_train_batch():
    gen = make_generator(2)
    model = TinyMixture(gen)
    _, _, x_v, y_v = batches(gen)
    opt = torch.optim.Adam(model.alphas())
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        architecture_step(model, opt, ce, x_v, y_v, order=3)
    with pytest.raises(ValueError, match="needs the training batch"):
        architecture_step(model, opt, ce, x_v, y_v, order=2)


@pytest.mark.parametrize("order", [1, 2])
def test_loss_scale_gives_the_scaled_hypergradient(order):
    """fp16 AMP multiplies the losses by S: the result must be exactly S × the unscaled one."""
    gen = make_generator(3)
    model = TinyMixture(gen)
    x_t, y_t, x_v, y_v = batches(gen)
    scale = torch.tensor(1024.0, dtype=torch.float64)

    def scaled_ce(m, x, y):
        return ce(m, x, y) * scale

    kwargs = dict(order=order, x_train=x_t, y_train=y_t, lr=0.5, momentum=0.0)
    plain = hypergradient(model, ce, x_v, y_v, **kwargs)[0]
    scaled = hypergradient(model, scaled_ce, x_v, y_v, loss_scale=scale, **kwargs)[0]
    assert relative_error(scaled / scale, plain) < 1e-6


def test_reduce_grads_sees_the_hypergradient_before_the_step():
    gen = make_generator(4)
    model = TinyMixture(gen)
    _, _, x_v, y_v = batches(gen)
    opt = torch.optim.SGD(model.alphas(), lr=1.0)
    before = model.alpha.detach().clone()
    expected = first_order_hypergradient(model, ce, x_v, y_v)[0]

    def halve(grads):
        for g in grads:
            g.mul_(0.5)

    architecture_step(model, opt, ce, x_v, y_v, reduce_grads=halve)
    torch.testing.assert_close(model.alpha.detach(), before - 0.5 * expected)
