"""Collapse guards on the architecture parameters.

DARTS collapses into parameter-free ops (skip_connect, pooling) when it searches long
enough: those ops make the supernet's training loss fall fastest early on, their alphas
grow, and the derived cell ends up with few learnable ops (Zela et al. 2020; Chu et al.
2021). β-DARTS (Ye et al., CVPR 2022) keeps the alphas' softmax from being driven to
extremes by adding to the validation loss λ_t · smoothmax(α), where the smoothmax of an
edge is logsumexp(α_e) and the term is averaged over the edges; its gradient on α_e is
λ_t · softmax(α_e) / E, a push down on every op in proportion to its weight, which the
Adam-normalised update turns into a decay of the largest alphas. λ_t ramps linearly with
the epoch: λ_t = λ · epoch / epochs (epoch counted from 0), so ``λ = 25`` over 50 epochs
is the public β-DARTS code's DARTS-space schedule (0.5 · epoch).
"""
from __future__ import annotations

from typing import Sequence

import torch


def beta_decay_loss(alphas: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over every edge of every tensor in ``alphas`` ([edges, ops] each) of logsumexp(α_edge)."""
    if not alphas:
        raise ValueError("beta_decay_loss needs at least one alpha tensor")
    for a in alphas:
        if a.dim() != 2:
            raise ValueError(f"beta_decay_loss takes [edges, ops] alpha tensors, got shape {tuple(a.shape)}")
    total = sum(torch.logsumexp(a, dim=-1).sum() for a in alphas)
    return total / sum(a.shape[0] for a in alphas)


def beta_decay_weight(max_weight: float, epoch: int, epochs: int) -> float:
    """λ_t for the 0-based ``epoch`` of ``epochs``: a linear ramp from 0 towards ``max_weight``."""
    if epochs < 1 or not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    return float(max_weight) * epoch / epochs


def sum_penalties(*penalties):
    """One ``penalty(model)`` hook adding the given ones (None entries skipped); None if none.
    A single penalty is returned as it is, so a run with one term computes what it did alone."""
    given = [p for p in penalties if p is not None]
    if len(given) < 2:
        return given[0] if given else None

    def total(model):
        return sum((p(model) for p in given[1:]), given[0](model))
    return total
