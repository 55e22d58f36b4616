"""The settings every run has, search or training: one base dataclass and their checks.

:class:`~dartsfast.search.SearchConfig` and :class:`~dartsfast.train.TrainConfig` extend
:class:`RunConfig` with their own fields (and their own defaults where they differ), so a
shared setting is declared, checked and reported the same way in both.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional

from dartsfast._validate import check_device_field, field_error, is_int, is_real, normalise_path_fields
from dartsfast.runtime import AMP_MODES

# The datasets dartsfast.data loads. Named here, below dartsfast.data, so a config can be
# checked without importing the loaders (dartsfast.data re-exports it).
DATASETS = ("digits", "fashion-mnist", "cifar10", "synthetic", "imagefolder")
# (training + test samples, channels, native side) of each, for sizing a run before any
# data is loaded (dartsfast.search.memory); None samples: SearchConfig.synthetic_size, or
# for an image folder unknown before its scan (and it may be streamed: no dataset term).
DATASET_SHAPES = {"digits": (1797, 1, 16), "fashion-mnist": (70000, 1, 28), "cifar10": (60000, 3, 32),
                  "synthetic": (None, 3, 16), "imagefolder": (None, 3, 32)}
# How an image folder's images are converted: auto = 1 channel if all are grayscale, 3 if
# all are colour (a mix is an error naming a file); rgb / gray convert every image.
IMAGE_MODES = ("auto", "rgb", "gray")
# torch.manual_seed takes 64 bits and the search derives generator seeds as seed * 1000 + k;
# 32 bits (numpy's legacy range) leaves room for both and is what most tools accept.
MAX_SEED = 2**32 - 1

# Field rules shared by the configs: (test, what the error says the value must be).
Rule = tuple[Callable[[Any], bool], str]
POSITIVE_INT: Rule = (lambda v: is_int(v) and v >= 1, "a positive int")
OPTIONAL_POSITIVE_INT: Rule = (lambda v: v is None or (is_int(v) and v >= 1), "None or a positive int")
POSITIVE_REAL: Rule = (lambda v: is_real(v) and v > 0, "a finite number > 0")
NON_NEGATIVE_REAL: Rule = (lambda v: is_real(v) and v >= 0, "a finite number >= 0")
FRACTION: Rule = (lambda v: is_real(v) and 0 <= v < 1, "a number in [0, 1)")  # a momentum, a drop rate
BOOL: Rule = (lambda v: isinstance(v, bool), "a bool")
OPTIONAL_BOOL: Rule = (lambda v: v is None or isinstance(v, bool), "None (auto), True or False")


@dataclass
class RunConfig:
    """Settings shared by search and training. Checked on construction (ValueError naming the field).

    ``image_size``: resize to this side (None = native). ``augment``: the dataset's default
    crop (+ flip for cifar10). ``amp``: 'off' | 'bf16' | 'fp16' (fp16 adds a GradScaler).
    ``channels_last``: None = on for CUDA. ``device``: 'auto' (CUDA if available) or a
    torch device string. ``grad_clip``: max gradient norm, None or 0 = off.
    ``max_train_samples``: use only the first N training samples (quick runs, tests).
    ``image_mode``: an image folder's channels, one of ``IMAGE_MODES``. ``data_memory_gb``:
    the device memory an image folder's decoded set may take to stay resident (None: a
    quarter of the device's memory; 0: always stream). ``data_workers``: DataLoader
    workers per streamed iterator (None: half the cores, 1 to 4; 0: decode in the loop).
    ``out``: the run's output directory (None = write nothing).
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    download: bool = False
    image_size: Optional[int] = None
    epochs: int = 20
    batch_size: int = 64
    channels: int = 16
    layers: int = 8
    augment: bool = False
    amp: str = "off"
    channels_last: Optional[bool] = None
    device: str = "auto"
    seed: int = 0
    grad_clip: Optional[float] = 5.0
    max_train_samples: Optional[int] = None
    image_mode: str = "auto"
    data_memory_gb: Optional[float] = None
    data_workers: Optional[int] = None
    out: Optional[str] = None

    # (fewest cells, what to say otherwise): a subclass may need more cells than one.
    LAYERS_RULE: ClassVar[tuple[int, str]] = (1, "a positive int")

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise self._bad("dataset", f"one of {', '.join(DATASETS)}")
        self._check(POSITIVE_INT, "epochs", "batch_size", "channels")
        fewest, rule = self.LAYERS_RULE
        if not is_int(self.layers) or self.layers < fewest:
            raise self._bad("layers", rule)
        self._check(OPTIONAL_POSITIVE_INT, "image_size", "max_train_samples")
        if self.amp not in AMP_MODES:
            raise self._bad("amp", f"one of {', '.join(AMP_MODES)}")
        self._check(BOOL, "download", "augment")
        self._check(OPTIONAL_BOOL, "channels_last")
        if not is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise self._bad("seed", f"an int in [0, {MAX_SEED}] (2**32 - 1)")
        if self.grad_clip is not None and (not is_real(self.grad_clip) or self.grad_clip < 0):
            raise self._bad("grad_clip", "None or a finite number >= 0 (0 = off)")
        if self.image_mode not in IMAGE_MODES:
            raise self._bad("image_mode", f"one of {', '.join(IMAGE_MODES)}")
        if self.data_memory_gb is not None and not (is_real(self.data_memory_gb) and self.data_memory_gb >= 0):
            raise self._bad("data_memory_gb", "None (a quarter of the device) or a finite number >= 0 (0 = stream)")
        if self.data_workers is not None and not (is_int(self.data_workers) and self.data_workers >= 0):
            raise self._bad("data_workers", "None (auto) or an int >= 0")
        check_device_field(self)
        normalise_path_fields(self, ("out", "data_dir"))
        if self.dataset == "imagefolder" and self.data_dir is None:
            raise self._bad("data_dir", "the image folder for dataset 'imagefolder' (--data-dir D, "
                            "with D/train/<class>/<images>)")

    def _bad(self, name: str, want: str) -> ValueError:
        return field_error(self, name, want)

    def _check(self, rule: Rule, *names: str) -> None:
        """Each named field must pass ``rule``; the first that does not raises, naming it."""
        ok, want = rule
        for name in names:
            if not ok(getattr(self, name)):
                raise self._bad(name, want)

    def _lr_floor(self, name: str, lr_name: str) -> None:
        """The cosine schedule's final rate: in [0, the starting rate]."""
        if not is_real(getattr(self, name)) or not 0 <= getattr(self, name) <= getattr(self, lr_name):
            raise self._bad(name, f"a number in [0, {lr_name}={getattr(self, lr_name)}]")

    def to_dict(self) -> dict:
        """Plain values only (the dict goes into checkpoints and model files)."""
        d = dataclasses.asdict(self)
        d["device"] = str(d["device"])
        return d
