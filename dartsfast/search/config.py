"""The search's settings: one validated dataclass shared by the API and the CLI, on the common RunConfig."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from dartsfast import backend
from dartsfast._validate import is_int, is_real
from dartsfast.config import BOOL, FRACTION, NON_NEGATIVE_REAL, OPTIONAL_BOOL, POSITIVE_INT, POSITIVE_REAL, RunConfig
from dartsfast.search.latency_term import LATENCY_FORMS
from dartsfast.search.recompute import MEMORY_MODES
from dartsfast.search.space import DEFAULT_OPS, check_op_names

# torch.compile backends the search accepts: inductor generates kernels (C++ on a CPU,
# Triton on a GPU); aot_eager traces forward and backward without generating code (quick,
# for checking that a network compiles).
COMPILE_BACKENDS = ("inductor", "aot_eager")

# Fields that may differ between a checkpoint and the run that resumes it: they change
# where files go, what is printed, how the same kernels are launched (cuda_graph) or
# whether activations are kept or recomputed (memory: the same bits), or whether an image
# folder is resident or streamed (data_memory_gb, data_workers: the same batches), not
# what the search computes.
RESUME_FREE_FIELDS = ("out", "resume", "overwrite", "progress", "data_dir", "download", "plots", "cuda_graph",
                      "memory", "data_memory_gb", "data_workers")


@dataclass
class SearchConfig(RunConfig):
    """Settings of :func:`dartsfast.search.search`. Checked on construction (ValueError naming the field).

    Defaults are the DARTS paper's search settings (Liu et al. 2019, §A.1.1): weights by SGD
    (lr 0.025 cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4, gradient
    clipping at 5); alphas by Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3);
    the training set split half for the weights, half for the alphas.

    The shared settings are :class:`~dartsfast.config.RunConfig`'s (``augment``: crop during
    search; fp16 ``amp`` adds GradScalers, skipped steps are counted). ``backend``: None keeps
    the process's current choice, else one of ``dartsfast.backend.BACKENDS`` for the duration
    of the search. ``partial_channels``: PC-DARTS K (1 = off); ``edge_normalization``: None =
    on iff K > 1. ``edge_batching``: compute the edges leaving each cell state together
    (:class:`~dartsfast.search.batched_cell.BatchedCell`; the same search in 2.8x fewer,
    larger ops); False runs the textbook per-edge cell; None: batched on CUDA, where a step
    is bound by launches, per-edge on a CPU, where it is bound by compute (README).
    ``compile``: a ``torch.compile`` backend for the supernet (one of ``COMPILE_BACKENDS``;
    None: eager). ``cuda_graph``: capture the step in one CUDA graph
    (:mod:`dartsfast.search.graph_step`); None: wherever it can be captured, True: also say
    why when it cannot. ``memory``: 'fast' keeps every activation for backward, 'lean'
    recomputes each cell in backward (:mod:`dartsfast.search.recompute`; the same
    results, a fraction of the memory). ``warmup_epochs``: epochs at the start that train
    only the weights (the alphas stay put, as in PC-DARTS), so the alphas are not steered by
    untrained weights. ``beta_decay``: λ of β-DARTS's beta-decay regularisation of the
    alphas (:mod:`dartsfast.search.regularizers`; 0 = off), ramped linearly over the epochs.
    ``latency_lut``: a latency lookup table (a path, or "auto": built for this device at the
    start and kept in ``out``) whose expected latency the architecture loss adds
    (:mod:`dartsfast.search.latency_term`) with weight ``latency_weight`` (0: only reported in
    the history) in ``latency_form`` proxyless | constraint | fbnet; ``latency_target_ms``:
    the constraint's target (fbnet's reference); ``latency_dual_lr``: the step size of the
    constraint's multiplier, which grows while the found network is over the target (dual
    ascent; 0: λ alone); ``latency_force``: use a table measured for
    another device, dtype, layout or space (:mod:`dartsfast.search.latency_setup`) anyway.
    ``out``: directory for genotype.json, history.json, checkpoint.pt and plots (None = write
    nothing). ``resume``: continue from ``out/checkpoint.pt`` (which must exist).
    ``overwrite``: allow starting afresh over an existing checkpoint (never implied;
    not with ``resume``).
    """

    epochs: int = 50
    batch_size: int = 64
    ops: tuple = field(default_factory=lambda: tuple(DEFAULT_OPS))
    order: int = 1
    backend: Optional[str] = None
    train_fraction: float = 0.5
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    alpha_lr: float = 3e-4
    alpha_betas: tuple = (0.5, 0.999)
    alpha_weight_decay: float = 1e-3
    warmup_epochs: int = 0
    beta_decay: float = 0.0
    partial_channels: int = 1
    edge_normalization: Optional[bool] = None
    edge_batching: Optional[bool] = None
    compile: Optional[str] = None
    cuda_graph: Optional[bool] = None
    memory: str = "fast"
    latency_lut: Optional[str] = None
    latency_weight: float = 0.0
    latency_target_ms: Optional[float] = None
    latency_form: str = "proxyless"
    latency_dual_lr: float = 1.0
    latency_force: bool = False
    synthetic_size: int = 2048
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    plots: bool = True

    LAYERS_RULE = (3, "an int >= 3 (reduction cells sit at 1/3 and 2/3 of the depth)")

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(POSITIVE_INT, "synthetic_size", "partial_channels")
        if isinstance(self.ops, str):
            self.ops = tuple(s.strip() for s in self.ops.split(",") if s.strip())
        try:
            self.ops = check_op_names(tuple(self.ops))
        except (ValueError, TypeError) as e:
            raise ValueError(f"SearchConfig.ops: {e}") from None
        if self.order not in (1, 2) or not is_int(self.order):
            raise self._bad("order", "1 (first order) or 2 (second order)")
        if self.backend is not None and self.backend not in backend.BACKENDS:
            raise self._bad("backend", f"None or one of {', '.join(backend.BACKENDS)}")
        if not is_real(self.train_fraction) or not 0 < self.train_fraction < 1:
            raise self._bad("train_fraction", "a number in (0, 1)")
        self._check(POSITIVE_REAL, "w_lr", "alpha_lr")
        self._lr_floor("w_lr_min", "w_lr")
        self._check(FRACTION, "w_momentum")
        self._check(NON_NEGATIVE_REAL, "w_weight_decay", "alpha_weight_decay", "beta_decay")
        if not is_int(self.warmup_epochs) or not 0 <= self.warmup_epochs < self.epochs:
            raise self._bad("warmup_epochs", f"an int in [0, epochs) = [0, {self.epochs}): with no epoch "
                                             "left after the warm-up the alphas would never move")
        if not isinstance(self.alpha_betas, (tuple, list)) or len(self.alpha_betas) != 2 or not all(
                is_real(b) and 0 <= b < 1 for b in self.alpha_betas):
            raise self._bad("alpha_betas", "a pair of numbers in [0, 1), such as (0.5, 0.999)")
        self.alpha_betas = tuple(self.alpha_betas)
        self._check(BOOL, "resume", "overwrite", "progress", "plots")
        if self.resume and self.overwrite:
            raise ValueError("SearchConfig.resume and .overwrite exclude each other (--resume continues "
                             "the checkpoint in out, --overwrite starts afresh over it); pass one")
        if self.resume and self.out is None:
            raise ValueError("SearchConfig.resume needs SearchConfig.out (the directory holding checkpoint.pt)")
        self._check(OPTIONAL_BOOL, "edge_normalization", "edge_batching", "cuda_graph")
        if self.memory not in MEMORY_MODES:
            raise self._bad("memory", f"one of {', '.join(MEMORY_MODES)}")
        if self.compile is not None and self.compile not in COMPILE_BACKENDS:
            raise self._bad("compile", f"None or one of {', '.join(COMPILE_BACKENDS)}")
        self._check_latency()
        if not isinstance(self.device, str):  # stored in checkpoints: plain strings only
            raise self._bad("device", "'auto' or a torch device string")

    def _check_latency(self) -> None:
        if self.latency_lut is not None and (not isinstance(self.latency_lut, str) or not self.latency_lut.strip()):
            raise self._bad("latency_lut", "None, 'auto' or the path of a latency table (dartsfast profile --lut)")
        self._check(NON_NEGATIVE_REAL, "latency_weight")
        if self.latency_target_ms is not None and not (is_real(self.latency_target_ms) and self.latency_target_ms > 0):
            raise self._bad("latency_target_ms", "None or a finite number of milliseconds > 0")
        if self.latency_form not in LATENCY_FORMS:
            raise self._bad("latency_form", f"one of {', '.join(LATENCY_FORMS)}")
        self._check(BOOL, "latency_force")
        self._check(NON_NEGATIVE_REAL, "latency_dual_lr")
        if self.latency_form == "constraint" and self.latency_target_ms is None:
            raise ValueError("SearchConfig.latency_form 'constraint' needs SearchConfig.latency_target_ms "
                             "(--latency-target MS): it penalises only latency above the target")
        if self.latency_lut is None and (self.latency_weight > 0 or self.latency_target_ms is not None):
            what = "latency_weight > 0" if self.latency_weight > 0 else "latency_target_ms"
            raise ValueError(f"SearchConfig.{what} needs SearchConfig.latency_lut (--latency-lut FILE|auto): "
                             "the latencies come from that table")

    @property
    def use_edge_normalization(self) -> bool:
        return self.partial_channels > 1 if self.edge_normalization is None else self.edge_normalization

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["ops"], d["alpha_betas"] = list(self.ops), list(self.alpha_betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "SearchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SearchConfig field(s): {', '.join(unknown)}")
        data = dict(data)
        for key in ("ops", "alpha_betas"):
            if key in data and isinstance(data[key], list):
                data[key] = tuple(data[key])
        return cls(**data)

    def differences(self, other: "SearchConfig") -> list[str]:
        """Fields (outside RESUME_FREE_FIELDS) whose values differ, as 'name: a != b'."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: {theirs[k]!r} != {mine[k]!r}" for k in mine
                if k not in RESUME_FREE_FIELDS and mine[k] != theirs[k]]
