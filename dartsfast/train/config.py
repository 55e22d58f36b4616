"""Settings of training from scratch (DARTS evaluation), on the common RunConfig."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from dartsfast._validate import is_int
from dartsfast.config import BOOL, FRACTION, NON_NEGATIVE_REAL, OPTIONAL_POSITIVE_INT, POSITIVE_REAL, RunConfig


@dataclass
class TrainConfig(RunConfig):
    """Training from scratch (DARTS evaluation). Checked on construction (ValueError naming the field).

    The shared settings are :class:`~dartsfast.config.RunConfig`'s (``augment``: the
    dataset's default crop (+ flip for cifar10) from :func:`dartsfast.data.default_augment`;
    ``device`` may also be a torch.device). ``cutout``: side of the cutout square (0 = off).
    ``max_test_samples``: use only the first N test samples (quick runs, tests).
    ``out``: directory for ``model.pt`` and ``train_history.json`` (None = write nothing).
    """

    epochs: int = 20
    batch_size: int = 96
    augment: bool = True
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    drop_path_prob: float = 0.2
    auxiliary: bool = False
    auxiliary_weight: float = 0.4
    cutout: int = 0
    max_test_samples: Optional[int] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check(OPTIONAL_POSITIVE_INT, "max_test_samples")
        self._check(POSITIVE_REAL, "lr")
        self._lr_floor("lr_min", "lr")
        self._check(FRACTION, "momentum")
        self._check(NON_NEGATIVE_REAL, "weight_decay", "auxiliary_weight")
        self._check(FRACTION, "drop_path_prob")
        if not is_int(self.cutout) or self.cutout < 0:
            raise self._bad("cutout", "an int >= 0 (0 = off)")
        self._check(BOOL, "auxiliary")
