"""The architecture step of DARTS: first order, or second order (unrolled, finite differences).

Second order (Liu et al. 2019, eq. 7-8): with the virtual step
``w' = w − ξ·(momentum·buf + ∇w L_train(w, α) + wd·w)`` the hypergradient is

    ∇α L_val(w', α) − ξ · ∇²_{α,w} L_train(w, α) · ∇w' L_val(w', α)

and the Hessian-vector product is approximated by central differences:
``(∇α L_train(w⁺, α) − ∇α L_train(w⁻, α)) / (2ε)`` with ``w± = w ± ε·v``,
``v = ∇w' L_val(w', α)``, ``ε = 0.01 / ‖v‖``. (FIELD-NOTES: the seed code divided this
wrongly and so was first order in effect; ``test_bilevel`` checks ours against autograd.)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from dartsfast.search.recompute import alphas_only_backward, running_stats_frozen

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _assign_grads(params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
    for p, g in zip(params, grads):
        if p.grad is None:
            p.grad = g.detach().clone()
        else:
            p.grad.copy_(g)


def _zero_filled(tensors, grads) -> list[torch.Tensor]:
    """``grads`` with zeros for the tensors the loss does not reach (``allow_unused``'s None)."""
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


def _alphas_gradient(loss: torch.Tensor, alphas: list) -> list[torch.Tensor]:
    """∂loss/∂α alone; in lean memory the recomputation skips what the alphas do not need."""
    with alphas_only_backward():
        return _zero_filled(alphas, torch.autograd.grad(loss, alphas, allow_unused=True))


def first_order_hypergradient(model, loss_fn: LossFn, x_val, y_val) -> list[torch.Tensor]:
    """∇α L_val(w, α), without touching the weights' ``.grad``."""
    return _alphas_gradient(loss_fn(model, x_val, y_val), model.alphas())


# The weight lists below hold ~3,300 small tensors (seed configuration), so every update is
# one multi-tensor (torch._foreach_*) op over the list instead of a Python loop of ops per
# tensor: the loops made a second-order step 5.6x the ops of a first-order one (127,891).


@torch.no_grad()
def _virtual_step(weights, grads, lr: float | torch.Tensor, momentum: float, weight_decay: float,
                  optimizer: torch.optim.Optimizer | None) -> None:
    """In place: w ← w − lr·(momentum·buf + g + wd·w), the SGD step the weights would take."""
    steps = torch._foreach_add(grads, weights, alpha=weight_decay)
    if momentum and optimizer is not None:
        bufs = [optimizer.state.get(w, {}).get("momentum_buffer") for w in weights]
        with_buf = [i for i, b in enumerate(bufs) if b is not None]
        if with_buf:
            torch._foreach_add_([steps[i] for i in with_buf], [bufs[i] for i in with_buf], alpha=momentum)
    if isinstance(lr, torch.Tensor):  # a CUDA-graph step: the rate is read from the device at replay
        torch._foreach_mul_(steps, lr)
        torch._foreach_sub_(weights, steps)
    else:
        torch._foreach_add_(weights, steps, alpha=-lr)


def second_order_hypergradient(model, loss_fn: LossFn, x_train, y_train, x_val, y_val, *,
                               lr: float | torch.Tensor,
                               momentum: float = 0.0, weight_decay: float = 0.0,
                               weight_optimizer: torch.optim.Optimizer | None = None,
                               loss_scale: torch.Tensor | None = None,
                               val_loss_fn: LossFn | None = None) -> list[torch.Tensor]:
    """The unrolled DARTS hypergradient (see module docstring); weights are restored exactly.

    ``val_loss_fn``: the validation loss when it differs from the training loss ``loss_fn``
    (a latency factor of the alphas): the virtual step and the Hessian term keep ``loss_fn``.

    ``loss_scale`` (a 0-d tensor, fp16 AMP): ``loss_fn`` already returns the loss times
    this scale. The virtual step unscales the training gradient; the result is the
    hypergradient times the scale, ready for ``GradScaler.step``.
    """
    weights, alphas = model.weights(), model.alphas()
    with torch.no_grad():
        saved = torch._foreach_mul(weights, 1.0)  # one copy op for all weights (x·1 is exact)
    try:
        train_grads = torch.autograd.grad(loss_fn(model, x_train, y_train), weights, allow_unused=True)
        train_grads = [torch.zeros_like(w) if g is None else g for w, g in zip(weights, train_grads)]
        if loss_scale is not None:
            train_grads = torch._foreach_div(train_grads, loss_scale.to(train_grads[0].dtype))
        _virtual_step(weights, train_grads, lr, momentum, weight_decay, weight_optimizer)   # w'
        with running_stats_frozen(model):
            val_loss = (val_loss_fn or loss_fn)(model, x_val, y_val)
        grads = torch.autograd.grad(val_loss, alphas + weights, allow_unused=True)
        d_alpha = _zero_filled(alphas, grads[:len(alphas)])
        v = _zero_filled(weights, grads[len(alphas):])
        # ‖v‖: per-tensor norms in one op, combined in float64 (ε needs no more precision)
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(v)).double())
        eps = 0.01 / norm.clamp_min(1e-12)   # a device scalar: no host sync
        hessian = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                shift = torch._foreach_mul(v, (sign * eps).to(v[0].dtype))
                torch._foreach_copy_(weights, torch._foreach_add(saved, shift))
            with running_stats_frozen(model):
                loss = loss_fn(model, x_train, y_train)
            hessian.append(_alphas_gradient(loss, alphas))
        # With a loss scale S, v and the differenced gradients both carry S (ε carries 1/S),
        # so the product term carries S² and is divided by S once to match d_alpha's S.
        divisor = 2 * eps if loss_scale is None else 2 * eps * loss_scale.double()
        return [da - lr * (hp - hm) / divisor.to(da.dtype)
                for da, hp, hm in zip(d_alpha, hessian[0], hessian[1])]
    finally:
        with torch.no_grad():
            torch._foreach_copy_(weights, saved)


def hypergradient(model, loss_fn: LossFn, x_val, y_val, *, order: int = 1, x_train=None, y_train=None,
                  lr: float | torch.Tensor = 0.0, momentum: float = 0.0, weight_decay: float = 0.0,
                  weight_optimizer: torch.optim.Optimizer | None = None,
                  loss_scale: torch.Tensor | None = None, val_loss_fn: LossFn | None = None) -> list[torch.Tensor]:
    """∇α of the validation loss, first order (``order=1``) or unrolled second order (``order=2``).

    ``lr``, ``momentum``, ``weight_decay``, ``weight_optimizer``: the weights' SGD step,
    used by the second-order virtual step (``lr`` a float, or a 0-d device tensor in a
    CUDA-graph step). ``loss_scale``: see
    :func:`second_order_hypergradient` (first order needs nothing: the gradient is linear).
    ``val_loss_fn``: the validation loss, if not ``loss_fn`` (see there).
    """
    if order == 1:
        return first_order_hypergradient(model, val_loss_fn or loss_fn, x_val, y_val)
    if order == 2:
        if x_train is None or y_train is None:
            raise ValueError("second-order search needs the training batch (x_train, y_train)")
        return second_order_hypergradient(model, loss_fn, x_train, y_train, x_val, y_val, lr=lr,
                                          momentum=momentum, weight_decay=weight_decay,
                                          weight_optimizer=weight_optimizer, loss_scale=loss_scale,
                                          val_loss_fn=val_loss_fn)
    raise ValueError(f"order must be 1 or 2, got {order!r}")


def architecture_step(model, alpha_optimizer: torch.optim.Optimizer, loss_fn: LossFn, x_val, y_val, *,
                      order: int = 1, x_train=None, y_train=None, lr: float | torch.Tensor = 0.0, momentum: float = 0.0,
                      weight_decay: float = 0.0, weight_optimizer: torch.optim.Optimizer | None = None,
                      scaler: torch.amp.GradScaler | None = None,
                      reduce_grads: Callable[[list[torch.Tensor]], None] | None = None,
                      penalty: Callable[[nn.Module], torch.Tensor] | None = None,
                      val_loss_fn: LossFn | None = None) -> None:
    """One alpha update: the hypergradient of the chosen order, then ``alpha_optimizer.step()``.

    ``scaler``: an enabled fp16 GradScaler scales the losses (small alpha gradients would
    flush to zero in fp16) and skips the step when the gradient is not finite.
    ``reduce_grads``: called on the hypergradients in place before the step (DDP: the
    all-reduce that keeps every rank's alphas identical).
    ``penalty(model)``: a term of the alphas alone added to the validation loss (a collapse
    guard, :mod:`dartsfast.search.regularizers`); its gradient, exact and the same on every
    rank, is added after the reduction, scaled like the loss under fp16.
    ``val_loss_fn``: the validation loss when it is not ``loss_fn`` (``fbnet``'s latency
    factor multiplies the validation loss, not the training loss of the unrolled step).
    """
    scaled_fn, scaled_val, loss_scale = loss_fn, val_loss_fn, None
    if scaler is not None and scaler.is_enabled():
        def scaled_fn(m, x, y):
            return scaler.scale(loss_fn(m, x, y))
        if val_loss_fn is not None:
            def scaled_val(m, x, y):
                return scaler.scale(val_loss_fn(m, x, y))
        loss_scale = scaler.scale(torch.ones((), device=x_val.device))
    grads = hypergradient(model, scaled_fn, x_val, y_val, order=order, x_train=x_train, y_train=y_train,
                          lr=lr, momentum=momentum, weight_decay=weight_decay,
                          weight_optimizer=weight_optimizer, loss_scale=loss_scale, val_loss_fn=scaled_val)
    if reduce_grads is not None:
        reduce_grads(grads)
    if penalty is not None:
        alphas = model.alphas()
        extra = torch.autograd.grad(penalty(model), alphas, allow_unused=True)
        for g, e in zip(grads, extra):
            if e is not None:
                g.add_(e if loss_scale is None else e * loss_scale)
    alpha_optimizer.zero_grad(set_to_none=False)
    _assign_grads(model.alphas(), grads)
    if loss_scale is None:
        alpha_optimizer.step()
    else:
        scaler.step(alpha_optimizer)
        scaler.update()
