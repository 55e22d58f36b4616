"""The search's differentiable expected-latency term, from a latency lookup table (issue 18).

The alphas are shared by every cell of a type, so the supernet's expected latency under
its softmaxed alphas p = softmax(α) is linear in p (ProxylessNAS, Cai et al. 2019):

    E_ms = const + Σ_e Σ_k p_normal[e,k]·L_normal[e,k] + Σ_e Σ_k p_reduce[e,k]·L_reduce[e,k]

where L_type[e, k] is the LUT latency (ms) of op k at edge e's real position (C, H, W,
stride) summed over all the cells of that type, and 'none' costs 0. Its gradient is
∂E/∂α_ek = p_ek·(L_ek − Σ_j p_ej·L_ej): an op slower than its edge's current mixture is
pushed down. ``const`` is the stem, the cells' preprocessing, node sums and the
classifier: the table's header ``constant_s``, which ``build_lut`` measures on the network
with free placeholder ops (:mod:`dartsfast.search.latency_constant`); 0 for a table
without it. It shifts E, not its gradient, except through ``constraint``'s threshold and
``fbnet``'s ratio. ``genotype_latency_ms`` is then the table's prediction for the whole
discrete network, which the end of a search compares with a measurement
(:mod:`dartsfast.evaluation.search_latency`).

Forms (``latency_form``), λ = ``latency_weight``, T = ``latency_target_ms``:

* ``proxyless``: val_loss + λ·E_ms (an additive penalty of the alphas).
* ``constraint``: val_loss + λ·(1 + μ)·relu(x), x = (D_ms − T)/T: only the latency of the
  network the search would hand out now, above the target, costs (FBNetV3's resource
  constraint as a hinge, in units of the target). D_ms is that network's table latency
  (each node's two strongest edges, each with its strongest op but 'none':
  :meth:`LatencyTerm.derived_ms`, the same as ``genotype_latency_ms`` of the derived
  genotype), passed straight through: its value decides whether and how hard the hinge
  pushes, E_ms's gradient moves the alphas. A multiplier μ ≥ 0 holds the target (dual
  ascent, ``dual_lr`` = η): after each architecture step μ ← max(0, μ + η·clip(x, ±1)), so
  it grows while the network is over the target and shrinks while it is under. μ is a
  device buffer updated in place (no host sync), kept in the checkpoint and reported per
  epoch (``latency_multiplier``). What the 2026-12-01 sweeps' target runs taught: on the
  mixture alone the hinge stopped once the mixture met the target while the network was 9%
  over it (measured 1.345x the target); on max(mixture, network) with a fixed λ the network
  met the target at epochs 3-4 and drifted 4-8% over as the validation loss won again;
  the Lagrangian λ·(relu(x) + μ·x) on max(mixture, network) collapsed: the first epoch's
  excess (a network 2.9x the target) took μ to 17, the mixture stayed over the target
  after the network was under it, and μ·x pushed on to 0.59x the target, every op a
  skip_connect, validation accuracy 0.40.
* ``fbnet``: val_loss · (E_ms / ref)^λ, ref = T if given, else E_ms at uniform alphas
  (fixed when the search starts). FBNet's own CE·α·log(LAT)^β is not used as written: with
  α = λ the factor λ multiplies the whole gradient and Adam (the alphas' optimiser) divides
  it out again, so λ would change nothing, and log(LAT)^β depends on the time unit and is
  undefined below 1 unit (a small network on a GPU). (E/ref)^λ = exp(λ·log(E/ref)) is the
  same idea made unit-free and positive: log loss = log CE + λ·log E, so λ trades accuracy
  against latency (λ = 0.6 matches the paper's β as the exponent on the latency part;
  ≈ CE·(1 + λ·log(E/ref)) near ref). Multiplicative, so it wraps the validation loss
  (:meth:`LatencyTerm.wrap_loss`), not the additive penalty.

Everything inside the step is tensor arithmetic on the device with λ, T and ref fixed
Python floats: no host sync, so a CUDA-graph step can hold it.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast.search.latency_lut import NONE, Lut, is_identity
from dartsfast.search.positions import CellEdges
from dartsfast.search.space import Genotype, num_edges

LATENCY_FORMS = ("proxyless", "constraint", "fbnet")
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def latency_matrices(lut: Lut, cells: Sequence[CellEdges], ops: Sequence[str]
                     ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(L_normal, L_reduce, missing): float64 [E, K] milliseconds summed over the cells of each
    type, and the (op, C, H, W, stride) entries the table lacks (counted as 0 ms). Each op
    that is not an identity also costs the table's per-op overhead (never below 0 in all)."""
    per_op = per_op_ms(lut)
    e = len(cells[0].edges)
    mats = {False: torch.zeros(e, len(ops), dtype=torch.float64), True: torch.zeros(e, len(ops), dtype=torch.float64)}
    missing: dict[str, None] = {}
    for cell in cells:
        for row, (c, h, w, stride) in enumerate(cell.edges):
            for k, op in enumerate(ops):
                if op == NONE:
                    continue
                key = lut.key(op, c, c, h, w, stride)
                if key in lut.entries:
                    entry = 1e3 * float(lut.entries[key]["median_s"])
                    overhead = 0.0 if is_identity(op, stride) else per_op
                    mats[cell.reduction][row, k] += max(0.0, entry + overhead)
                else:
                    missing[f"{op} C={c} {h}x{w} stride {stride}"] = None
    return mats[False], mats[True], list(missing)


def constant_ms(lut: Lut) -> float:
    """The stem + preprocessing + classifier milliseconds the table holds (0 when it has none)."""
    return 1e3 * float(lut.header.get("constant_s", 0.0) or 0.0)


def per_op_ms(lut: Lut) -> float:
    """The milliseconds each op instance costs beyond its entry (0 for a table without it)."""
    return 1e3 * float(lut.header.get("per_op_s", 0.0) or 0.0)


class LatencyTerm(nn.Module):
    """The expected latency of a supernet's alphas and its penalty (see the module docstring).

    ``normal``, ``reduce``: float64 [E, K] ms (:func:`latency_matrices`); ``const_ms``: the
    fixed part. Buffers move with ``.to(device)``; the step reads float32 copies.
    """

    def __init__(self, normal: torch.Tensor, reduce: torch.Tensor, ops: Sequence[str], *, const_ms: float = 0.0,
                 weight: float = 0.0, form: str = "proxyless", target_ms: Optional[float] = None,
                 mode: str = "inference", dual_lr: float = 0.0) -> None:
        super().__init__()
        if form not in LATENCY_FORMS:
            raise ValueError(f"unknown latency form {form!r}; expected one of {', '.join(LATENCY_FORMS)}")
        if form == "constraint" and target_ms is None:
            raise ValueError("the constraint latency form needs a target (latency_target_ms)")
        if normal.shape != reduce.shape or normal.shape[1] != len(ops):
            raise ValueError(f"latency matrices {tuple(normal.shape)} / {tuple(reduce.shape)} do not match "
                             f"{len(ops)} ops")
        self.ops, self.form, self.mode = tuple(ops), form, mode
        self.header: dict = {}  # the table's header (latency_term_for fills it): dtype, layout, batch...
        self.weight, self.target_ms, self.const_ms = float(weight), target_ms, float(const_ms)
        if not (math.isfinite(dual_lr) and dual_lr >= 0):
            raise ValueError(f"the latency multiplier's step size must be a finite number >= 0, got {dual_lr}")
        self.dual_lr = float(dual_lr)
        # The constraint's multiplier μ (0-d): persistent, so a checkpoint carries it.
        self.register_buffer("multiplier", torch.zeros((), dtype=torch.float64))
        self.register_buffer("normal64", normal.to(torch.float64).clone(), persistent=False)
        self.register_buffer("reduce64", reduce.to(torch.float64).clone(), persistent=False)
        self.register_buffer("normal32", self.normal64.float(), persistent=False)
        self.register_buffer("reduce32", self.reduce64.float(), persistent=False)
        # The derivation on the device (no host sync): row r of node_rows lists node r's input
        # edges, padded with an index past the last edge, whose strength is -inf.
        steps = next(n for n in range(1, normal.shape[0] + 1) if num_edges(n) >= normal.shape[0])
        if num_edges(steps) != normal.shape[0]:
            raise ValueError(f"{normal.shape[0]} edges per cell is no DARTS cell (2, 5, 9, 14, ... edges)")
        rows = torch.full((steps, steps + 1), normal.shape[0], dtype=torch.long)
        for node in range(steps):
            rows[node, :2 + node] = torch.arange(num_edges(node), num_edges(node + 1))
        self.register_buffer("node_rows", rows, persistent=False)
        self.register_buffer("not_none", torch.tensor([op != NONE for op in ops]), persistent=False)
        uniform = self.const_ms + float(self.normal64.mean(1).sum() + self.reduce64.mean(1).sum())
        self.ref_ms = float(target_ms) if target_ms is not None else uniform
        if form == "fbnet" and not self.ref_ms > 0:
            raise ValueError(f"the fbnet latency form needs a positive reference latency, got {self.ref_ms} ms "
                             "(a table of zeros?); give latency_target_ms")

    # ------------------------------------------------------------------ values
    def expected_ms(self, weights_normal: torch.Tensor, weights_reduce: torch.Tensor) -> torch.Tensor:
        """E_ms of softmaxed weights [E, K] each (a 0-d tensor, differentiable, on their device)."""
        ln, lr = self._matrices(weights_normal.dtype)
        return (weights_normal * ln).sum() + (weights_reduce * lr).sum() + self.const_ms

    def _matrices(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_normal, L_reduce) in ``dtype``: the float64 buffers, else the float32 copies cast."""
        if dtype == torch.float64:
            return self.normal64, self.reduce64
        return self.normal32.to(dtype), self.reduce32.to(dtype)

    def expected_ms_of(self, alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> torch.Tensor:
        """E_ms of raw alphas (softmax over ops; PC-DARTS's edge betas do not change which ops run)."""
        return self.expected_ms(F.softmax(alphas_normal, dim=-1), F.softmax(alphas_reduce, dim=-1))

    def loss(self, alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> torch.Tensor:
        """The additive term of ``proxyless`` / ``constraint`` (λ and the current μ included)."""
        if self.form == "proxyless":
            return self.weight * self.expected_ms_of(alphas_normal, alphas_reduce)
        if self.form == "constraint":
            return self._constraint(self.excess(alphas_normal, alphas_reduce))
        raise ValueError("the fbnet latency form multiplies the loss: use wrap_loss")

    def excess(self, alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> torch.Tensor:
        """x = (D_ms − T)/T: the derived network's value, the mixture's gradient."""
        e = self.expected_ms_of(alphas_normal, alphas_reduce)
        derived = self.derived_ms(F.softmax(alphas_normal, dim=-1), F.softmax(alphas_reduce, dim=-1))
        e = e + (derived - e).detach()
        return (e - self.target_ms) / self.target_ms

    def _constraint(self, excess: torch.Tensor) -> torch.Tensor:
        # A copy of μ: the graph must not hold the buffer that ascend() updates in place.
        mu = self.multiplier.to(excess.dtype, copy=True)
        return self.weight * (1 + mu) * torch.relu(excess)

    @torch.no_grad()
    def ascend(self, excess: torch.Tensor) -> None:
        """μ ← max(0, μ + η·clip(x, ±1)), in place on the device: a network far over the target
        at the start (uniform alphas) must not build a multiplier that outlasts it."""
        step = self.dual_lr * excess.detach().clamp(-1.0, 1.0)
        self.multiplier.copy_((self.multiplier + step).clamp_min(0))

    @torch.no_grad()
    def derived_ms(self, weights_normal: torch.Tensor, weights_reduce: torch.Tensor) -> torch.Tensor:
        """The table latency of the genotype derived from softmaxed weights [E, K] each (a 0-d
        tensor with no gradient; ties may resolve otherwise than :func:`derive_genotype`)."""
        total = torch.zeros((), dtype=weights_normal.dtype, device=weights_normal.device) + self.const_ms
        for w, lat in zip((weights_normal, weights_reduce), self._matrices(weights_normal.dtype)):
            strength, best = w.masked_fill(~self.not_none, -math.inf).max(dim=1)
            cost = lat.gather(1, best[:, None])[:, 0]
            padded = torch.cat([strength, strength.new_full((1,), -math.inf)])[self.node_rows]
            kept = self.node_rows.gather(1, padded.topk(2, dim=1).indices)
            total = total + cost[kept].sum()
        return total

    def factor(self, alphas_normal: torch.Tensor, alphas_reduce: torch.Tensor) -> torch.Tensor:
        """``fbnet``'s multiplier (E_ms / ref)^λ."""
        e = self.expected_ms_of(alphas_normal, alphas_reduce).clamp_min(1e-12)
        return torch.pow(e / self.ref_ms, self.weight)

    # ------------------------------------------------------------------ in the search
    @property
    def active(self) -> bool:
        """Whether the term changes the search at all (λ > 0); λ = 0 only reports."""
        return self.weight > 0

    def penalty(self, model) -> torch.Tensor:
        """``architecture_step``'s ``penalty=`` hook: the additive term of a SearchModel's alphas.
        It runs once per architecture step, so ``constraint`` steps its multiplier here."""
        if self.form != "constraint":
            return self.loss(model.arch.alphas_normal, model.arch.alphas_reduce)
        excess = self.excess(model.arch.alphas_normal, model.arch.alphas_reduce)
        value = self._constraint(excess)
        if self.dual_lr > 0:
            self.ascend(excess)
        return value

    def wrap_loss(self, loss_fn: LossFn) -> LossFn:
        """``fbnet``: the validation loss times (E_ms / ref)^λ of the model's alphas."""
        def latency_weighted(model, x, y):
            return loss_fn(model, x, y) * self.factor(model.arch.alphas_normal, model.arch.alphas_reduce)
        return latency_weighted

    # ------------------------------------------------------------------ reports
    @torch.no_grad()
    def expected_latency_ms(self, weights_normal: torch.Tensor, weights_reduce: torch.Tensor) -> float:
        """E_ms of softmaxed weights as a float (host side: for the history, not the step)."""
        wn, wr = (w.detach().to("cpu", torch.float64) for w in (weights_normal, weights_reduce))
        return float((wn * self.normal64.cpu()).sum() + (wr * self.reduce64.cpu()).sum()) + self.const_ms

    def genotype_latency_ms(self, genotype: Genotype) -> float:
        """The LUT latency of the discrete network: each node's two kept (op, input) edges in
        every cell of its type, plus const. KeyError for an op outside the searched ones."""
        total = self.const_ms
        for cell, mat in ((genotype.normal, self.normal64.cpu()), (genotype.reduce, self.reduce64.cpu())):
            if num_edges(len(cell) // 2) != mat.shape[0]:
                raise ValueError(f"genotype has {len(cell) // 2} nodes per cell; the latency table "
                                 f"{mat.shape[0]} edges per cell")
            for e, (op, j) in enumerate(cell):
                if op not in self.ops:
                    raise KeyError(f"genotype op {op!r} is not one of the searched ops {list(self.ops)}")
                row = num_edges(e // 2) + j  # node e // 2's input j
                total += float(mat[row, self.ops.index(op)])
        return total

    def record(self, weights_normal: torch.Tensor, weights_reduce: torch.Tensor, genotype: Genotype) -> dict:
        """The history fields of one epoch."""
        out = {"expected_latency_ms": self.expected_latency_ms(weights_normal, weights_reduce),
               "genotype_latency_ms": self.genotype_latency_ms(genotype), "latency_lut_mode": self.mode}
        if self.form == "constraint":
            out["latency_multiplier"] = float(self.multiplier)
        for key in ("expected_latency_ms", "genotype_latency_ms"):
            if not math.isfinite(out[key]):
                raise FloatingPointError(f"{key} is {out[key]}: the latency table holds a non-finite entry")
        return out
