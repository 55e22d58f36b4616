"""The search's settings: one validated dataclass shared by the API and the CLI."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from dartsfast import backend
from dartsfast._validate import check_device_field, field_error, is_int, is_real, normalise_path_fields
from dartsfast.data import DATASETS
from dartsfast.runtime import AMP_MODES
from dartsfast.search.space import DEFAULT_OPS, check_op_names

# Fields that may differ between a checkpoint and the run that resumes it: they change
# where files go or what is printed, not a single number of the search.
RESUME_FREE_FIELDS = ("out", "resume", "overwrite", "progress", "data_dir", "download", "plots")


@dataclass
class SearchConfig:
    """Settings of :func:`dartsfast.search.search`. Checked on construction (ValueError naming the field).

    Defaults are the DARTS paper's search settings (Liu et al. 2019, §A.1.1): weights by SGD
    (lr 0.025 cosine-annealed to 0.001, momentum 0.9, weight decay 3e-4, gradient
    clipping at 5); alphas by Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3);
    the training set split half for the weights, half for the alphas.

    ``amp``: 'off' | 'bf16' | 'fp16' (fp16 adds GradScalers; skipped steps are counted).
    ``channels_last``: None = on for CUDA. ``backend``: None keeps the process's current
    choice, else one of ``dartsfast.backend.BACKENDS`` for the duration of the search.
    ``partial_channels``: PC-DARTS K (1 = off); ``edge_normalization``: None = on iff K > 1.
    ``max_train_samples``: use only the first N training samples (quick runs, tests).
    ``out``: directory for genotype.json, history.json, checkpoint.pt and plots (None =
    write nothing). ``resume``: continue from ``out/checkpoint.pt`` if it exists.
    ``overwrite``: allow starting afresh over an existing checkpoint (never implied).
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    download: bool = False
    image_size: Optional[int] = None
    epochs: int = 50
    batch_size: int = 64
    layers: int = 8
    channels: int = 16
    ops: tuple = field(default_factory=lambda: tuple(DEFAULT_OPS))
    order: int = 1
    amp: str = "off"
    channels_last: Optional[bool] = None
    backend: Optional[str] = None
    seed: int = 0
    train_fraction: float = 0.5
    augment: bool = False
    w_lr: float = 0.025
    w_lr_min: float = 0.001
    w_momentum: float = 0.9
    w_weight_decay: float = 3e-4
    grad_clip: Optional[float] = 5.0
    alpha_lr: float = 3e-4
    alpha_betas: tuple = (0.5, 0.999)
    alpha_weight_decay: float = 1e-3
    partial_channels: int = 1
    edge_normalization: Optional[bool] = None
    device: str = "auto"
    max_train_samples: Optional[int] = None
    synthetic_size: int = 2048
    out: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return field_error(self, name, want)

        if self.dataset not in DATASETS:
            raise bad("dataset", f"one of {', '.join(DATASETS)}")
        for name in ("epochs", "batch_size", "channels", "synthetic_size", "partial_channels"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "a positive int")
        if not is_int(self.layers) or self.layers < 3:
            raise bad("layers", "an int >= 3 (reduction cells sit at 1/3 and 2/3 of the depth)")
        for name in ("image_size", "max_train_samples"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                raise bad(name, "None or a positive int")
        if isinstance(self.ops, str):
            self.ops = tuple(s.strip() for s in self.ops.split(",") if s.strip())
        try:
            self.ops = check_op_names(tuple(self.ops))
        except (ValueError, TypeError) as e:
            raise ValueError(f"SearchConfig.ops: {e}") from None
        if self.order not in (1, 2) or not is_int(self.order):
            raise bad("order", "1 (first order) or 2 (second order)")
        if self.amp not in AMP_MODES:
            raise bad("amp", f"one of {', '.join(AMP_MODES)}")
        if self.backend is not None and self.backend not in backend.BACKENDS:
            raise bad("backend", f"None or one of {', '.join(backend.BACKENDS)}")
        if not is_int(self.seed):
            raise bad("seed", "an int")
        if not is_real(self.train_fraction) or not 0 < self.train_fraction < 1:
            raise bad("train_fraction", "a number in (0, 1)")
        for name in ("w_lr", "alpha_lr"):
            if not is_real(getattr(self, name)) or getattr(self, name) <= 0:
                raise bad(name, "a finite number > 0")
        if not is_real(self.w_lr_min) or not 0 <= self.w_lr_min <= self.w_lr:
            raise bad("w_lr_min", f"a number in [0, w_lr={self.w_lr}]")
        if not is_real(self.w_momentum) or not 0 <= self.w_momentum < 1:
            raise bad("w_momentum", "a number in [0, 1)")
        for name in ("w_weight_decay", "alpha_weight_decay"):
            if not is_real(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "a finite number >= 0")
        if self.grad_clip is not None and (not is_real(self.grad_clip) or self.grad_clip < 0):
            raise bad("grad_clip", "None or a finite number >= 0 (0 = off)")
        betas = tuple(self.alpha_betas)
        if len(betas) != 2 or not all(is_real(b) and 0 <= b < 1 for b in betas):
            raise bad("alpha_betas", "two numbers in [0, 1)")
        self.alpha_betas = betas
        for name in ("download", "augment", "resume", "overwrite", "progress", "plots"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool")
        for name in ("channels_last", "edge_normalization"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise bad(name, "None (auto), True or False")
        if not isinstance(self.device, str):  # stored in checkpoints: plain strings only
            raise bad("device", "'auto' or a torch device string")
        check_device_field(self)
        normalise_path_fields(self, ("out", "data_dir"))

    @property
    def use_edge_normalization(self) -> bool:
        return self.partial_channels > 1 if self.edge_normalization is None else self.edge_normalization

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
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
