"""The discrete network a genotype describes, and its training from scratch.

DARTS evaluation (Liu et al. 2019, §3.2): stack ``layers`` copies of the found cells
(reduction cells at 1/3 and 2/3 of the depth), train with SGD + cosine LR, drop path,
cutout and an optional auxiliary head, and report held-out test accuracy.

The loop follows DESIGN §4: the whole dataset lives on the device (``dartsfast.data``),
batches and augmentation are drawn there, and loss/accuracy are accumulated as device
tensors read once per epoch — no ``.item()`` per step, so a GPU is never stalled by the host.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import time
from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast._io import atomic_write
from dartsfast._validate import check_device_field, field_error, is_int, is_real, normalise_path_fields
from dartsfast.data import DATASETS, Augment, DeviceBatches, ImageDataset, default_augment, load_dataset
from dartsfast.nn.classic import FactorizedReduce, ReLUConvBN
from dartsfast.nn.layers import DropPath, check_probability
from dartsfast.runtime import AMP_MODES, autocast, evaluate_sums, resolve_device, synchronize
from dartsfast.search.space import Genotype, build_op

PathLike = Union[str, "os.PathLike[str]"]
MODEL_FILE = "model.pt"
HISTORY_FILE = "train_history.json"
_FORMAT_VERSION = 1

__all__ = ["AMP_MODES", "DiscreteCell", "DiscreteNetwork", "AuxiliaryHead", "TrainConfig",
           "TrainResult", "train", "evaluate", "load_genotype", "load_model"]


# ----------------------------------------------------------------------------- network

class DiscreteCell(nn.Module):
    """One DARTS evaluation cell: each intermediate node sums two ops of the genotype.

    Inputs ``s0`` [N, c_prev_prev, H0, W0] (the cell two back) and ``s1`` [N, c_prev, H, W]
    (the previous cell); when ``reduction_prev`` the previous cell halved H, W, so s0 is
    reduced by a FactorizedReduce (H0 = 2H). Output [N, len(concat) * c, H', W'] with
    H' = H / 2 in a reduction cell (its ops reading s0/s1 have stride 2), else H.

    ``drop_path``: per-sample drop probability applied (training only) to every op output
    except identities (DARTS: dropping a skip would remove the only path for the sample).
    """

    def __init__(self, genotype: Genotype, c_prev_prev: int, c_prev: int, c: int,
                 reduction: bool, reduction_prev: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        self.reduction = bool(reduction)
        self.preprocess0 = (FactorizedReduce(c_prev_prev, c, affine=True) if reduction_prev
                            else ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=True))
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=True)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = tuple(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.steps = len(edges) // 2
        self.multiplier = len(self.concat)
        self.indices = tuple(idx for _, idx in edges)
        self.ops = nn.ModuleList()
        self.drop_paths = nn.ModuleList()
        for name, idx in edges:
            stride = 2 if reduction and idx < 2 else 1
            op = build_op(name, c, stride, affine=True)
            self.ops.append(op)
            # Identity ops get no DropPath (nn.Identity), so forward has no branches.
            self.drop_paths.append(nn.Identity() if isinstance(op, nn.Identity) else DropPath(drop_path))

    def set_drop_path(self, prob: float) -> None:
        for d in self.drop_paths:
            if isinstance(d, DropPath):
                d.drop_prob = prob

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            a, b = 2 * i, 2 * i + 1
            h1 = self.drop_paths[a](self.ops[a](states[self.indices[a]]))
            h2 = self.drop_paths[b](self.ops[b](states[self.indices[b]]))
            states.append(h1 + h2)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS auxiliary classifier on the 2/3-depth features [N, C, H, W] → logits [N, classes].

    DARTS pools 8×8 maps with a 5×5/3 average pool to 2×2, then a 2×2 conv gives 1×1; an
    adaptive pool to 2×2 does the same at 8×8 and also works for the 2×2–4×4 maps of
    16-px inputs.
    """

    def __init__(self, c: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AdaptiveAvgPool2d(2),
            nn.Conv2d(c, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True))
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DiscreteNetwork(nn.Module):
    """The network a genotype describes (DARTS NetworkCIFAR).

    stem (3×3 conv, ``stem_multiplier * channels``, BN) → ``layers`` cells, reduction cells
    (channels doubled, H/W halved) at ``layers // 3`` and ``2 * layers // 3`` → global
    average pool → linear. Input [N, in_channels, H, W] (NCHW or channels_last); output
    logits [N, num_classes], or ``(logits, aux_logits)`` in training mode when
    ``auxiliary`` (the auxiliary head reads the output of cell ``2 * layers // 3``).

    ``drop_path_prob`` is a settable attribute (the trainer ramps it linearly per epoch).
    """

    def __init__(self, genotype: Genotype, channels: int = 16, num_classes: int = 10,
                 layers: int = 8, in_channels: int = 3, auxiliary: bool = False,
                 drop_path_prob: float = 0.0, stem_multiplier: int = 3) -> None:
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype must be a Genotype, got {type(genotype).__name__}")
        for name, value in (("channels", channels), ("num_classes", num_classes), ("layers", layers),
                            ("in_channels", in_channels), ("stem_multiplier", stem_multiplier)):
            if not is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.genotype = genotype
        self.layers = layers
        self.auxiliary = bool(auxiliary)
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_p, c_curr = c_curr, c_curr, channels
        self.reduction_layers = tuple(sorted({layers // 3, 2 * layers // 3}))
        self.aux_layer = 2 * layers // 3
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_p
        for i in range(layers):
            reduction = i in self.reduction_layers
            if reduction:
                c_curr *= 2
            cell = DiscreteCell(genotype, c_pp, c_p, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c_curr
            if i == self.aux_layer:
                c_aux = c_p
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)
        self._drop_path_prob = 0.0
        self.drop_path_prob = drop_path_prob

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, value: float) -> None:
        value = check_probability("drop_path_prob", value)
        self._drop_path_prob = value
        for cell in self.cells:
            cell.set_drop_path(value)

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_layer and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        logits = self.classifier(torch.flatten(self.global_pooling(s1), 1))
        if aux_logits is not None:
            return logits, aux_logits
        return logits


# ----------------------------------------------------------------------------- config

@dataclass
class TrainConfig:
    """Training from scratch (DARTS evaluation). Checked on construction (ValueError naming the field).

    ``cutout``: side of the cutout square (0 = off). ``augment``: the dataset's default
    crop (+ flip for cifar10) from :func:`dartsfast.data.default_augment`.
    ``amp``: 'off' | 'bf16' | 'fp16' (fp16 adds a GradScaler). ``channels_last``: None =
    on for CUDA. ``device``: 'auto' (CUDA if available) or a torch device string.
    ``grad_clip``: max gradient norm, None or 0 = off. ``max_train_samples`` /
    ``max_test_samples``: use only the first N samples (quick runs, tests).
    ``out``: directory for ``model.pt`` and ``train_history.json`` (None = write nothing).
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    download: bool = False
    image_size: Optional[int] = None
    epochs: int = 20
    batch_size: int = 96
    channels: int = 16
    layers: int = 8
    lr: float = 0.025
    lr_min: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: Optional[float] = 5.0
    drop_path_prob: float = 0.2
    auxiliary: bool = False
    auxiliary_weight: float = 0.4
    cutout: int = 0
    augment: bool = True
    amp: str = "off"
    channels_last: Optional[bool] = None
    device: str = "auto"
    seed: int = 0
    max_train_samples: Optional[int] = None
    max_test_samples: Optional[int] = None
    out: Optional[str] = None

    def __post_init__(self) -> None:
        def bad(name: str, want: str) -> ValueError:
            return field_error(self, name, want)

        if self.dataset not in DATASETS:
            raise bad("dataset", f"one of {', '.join(DATASETS)}")
        for name in ("epochs", "batch_size", "channels", "layers"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "a positive int")
        for name in ("image_size", "max_train_samples", "max_test_samples"):
            v = getattr(self, name)
            if v is not None and (not is_int(v) or v < 1):
                raise bad(name, "None or a positive int")
        if not is_real(self.lr) or self.lr <= 0:
            raise bad("lr", "a finite number > 0")
        if not is_real(self.lr_min) or not 0 <= self.lr_min <= self.lr:
            raise bad("lr_min", f"a number in [0, lr={self.lr}]")
        if not is_real(self.momentum) or not 0 <= self.momentum < 1:
            raise bad("momentum", "a number in [0, 1)")
        for name in ("weight_decay", "auxiliary_weight"):
            if not is_real(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "a finite number >= 0")
        if self.grad_clip is not None and (not is_real(self.grad_clip) or self.grad_clip < 0):
            raise bad("grad_clip", "None or a finite number >= 0 (0 = off)")
        if not is_real(self.drop_path_prob) or not 0 <= self.drop_path_prob < 1:
            raise bad("drop_path_prob", "a number in [0, 1)")
        if not is_int(self.cutout) or self.cutout < 0:
            raise bad("cutout", "an int >= 0 (0 = off)")
        if self.amp not in AMP_MODES:
            raise bad("amp", f"one of {', '.join(AMP_MODES)}")
        for name in ("download", "auxiliary", "augment"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool")
        if self.channels_last is not None and not isinstance(self.channels_last, bool):
            raise bad("channels_last", "None (auto), True or False")
        if not is_int(self.seed):
            raise bad("seed", "an int")
        check_device_field(self)
        normalise_path_fields(self, ("out", "data_dir"))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["device"] = str(d["device"])
        return d


@dataclass
class TrainResult:
    """``history``: one dict per epoch (epoch, train_loss, train_acc, test_loss, test_acc,
    lr, drop_path_prob, epoch_time_s, images_per_s); ``test_acc``: final test accuracy in
    [0, 1]; ``model``: the trained network (eval mode, on the training device)."""

    history: list
    test_acc: float
    model: DiscreteNetwork
    genotype: Genotype
    config: TrainConfig
    out: Optional[str] = None


# ----------------------------------------------------------------------------- files

def load_genotype(path: PathLike) -> Genotype:
    """Read a ``genotype.json`` (as written by ``Genotype.to_json()``); a directory means
    ``path/genotype.json``. FileNotFoundError / ValueError name the file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "genotype.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"genotype file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"genotype file {path} is not UTF-8 text: {e}") from e
    try:
        return Genotype.from_json(text)
    except ValueError as e:
        raise ValueError(f"genotype file {path}: {e}") from e


def _save_history(out: str, history: list) -> None:
    data = json.dumps(history, indent=2).encode()
    atomic_write(os.path.join(out, HISTORY_FILE), lambda f: f.write(data))


def _save_model(out: str, model: DiscreteNetwork, genotype: Genotype, config: TrainConfig,
                num_classes: int, in_channels: int, test_acc: float) -> None:
    payload = {
        "format_version": _FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "genotype": genotype.to_dict(),
        "config": config.to_dict(),
        "model_args": {"channels": config.channels, "num_classes": num_classes, "layers": config.layers,
                       "in_channels": in_channels, "auxiliary": config.auxiliary},
        "test_acc": test_acc,
    }
    atomic_write(os.path.join(out, MODEL_FILE), lambda f: torch.save(payload, f))


def load_model(path: PathLike, map_location: Any = "cpu") -> DiscreteNetwork:
    """Rebuild the network saved by :func:`train` (``path`` = model.pt or its directory), in eval mode.

    The saved ``genotype`` and ``config`` are attached as ``model.genotype`` and
    ``model.train_config`` (a dict)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
        genotype = Genotype.from_dict(payload["genotype"])
        model = DiscreteNetwork(genotype, **payload["model_args"])
        model.load_state_dict(payload["state_dict"])
    except (pickle.UnpicklingError, RuntimeError, KeyError, TypeError, ValueError, EOFError,
            AttributeError, IndexError) as e:
        raise ValueError(f"model file {path} is corrupt or not a dartsfast model: {e}") from e
    model.train_config = payload.get("config", {})
    return model.eval()


# ----------------------------------------------------------------------------- training

def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
             amp: str = "off", channels_last: bool = False) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``x`` [N, C, H, W], ``y`` [N] in eval
    mode (the model's mode is restored afterwards). One host read at the end."""
    if x.shape[0] == 0:
        raise ValueError("evaluate() needs at least one sample")
    loss_sum, correct = evaluate_sums(model, x, y, batch_size, amp, channels_last)
    loss_sum, correct = torch.stack([loss_sum, correct]).tolist()
    return loss_sum / x.shape[0], correct / x.shape[0]


def train(genotype: Union[Genotype, PathLike], config: Optional[TrainConfig] = None,
          progress: bool = True, *, dataset: Optional[ImageDataset] = None) -> TrainResult:
    """Train the network of ``genotype`` (a Genotype or a genotype.json path) from scratch.

    SGD with momentum and a cosine LR from ``lr`` to ``lr_min`` over the epochs (stepped per
    epoch), gradient clipping, drop path ramped linearly ``drop_path_prob * epoch / epochs``,
    on-device augmentation (crop, cutout), optional AMP and auxiliary head. Test accuracy
    is measured on the held-out test set after every epoch. ``dataset``: a preloaded
    :class:`~dartsfast.data.ImageDataset` to use instead of loading ``config.dataset``.
    With ``config.out`` set, writes ``model.pt`` and ``train_history.json`` there
    (atomically; the history after every epoch). Seeds torch's global RNG with
    ``config.seed`` (model init, drop-path masks), so CPU runs repeat exactly.
    Raises FloatingPointError if the training loss becomes non-finite (history kept).
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not isinstance(genotype, Genotype):
        if isinstance(genotype, (str, os.PathLike)):
            genotype = load_genotype(genotype)
        else:
            raise TypeError(f"genotype must be a Genotype or a path, got {type(genotype).__name__}")
    device = resolve_device(config.device, "TrainConfig.device")
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    if config.out is not None:
        os.makedirs(config.out, exist_ok=True)

    torch.manual_seed(config.seed)  # model init and drop-path masks
    if dataset is None:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                               image_size=config.image_size, seed=config.seed)
    data = dataset.to(device)
    train_x, train_y = data.train_x, data.train_y
    test_x, test_y = data.test_x, data.test_y
    if config.max_train_samples is not None:
        train_x, train_y = train_x[:config.max_train_samples], train_y[:config.max_train_samples]
    if config.max_test_samples is not None:
        test_x, test_y = test_x[:config.max_test_samples], test_y[:config.max_test_samples]
    if config.batch_size > train_x.shape[0]:
        raise ValueError(f"TrainConfig.batch_size {config.batch_size} exceeds the "
                         f"{train_x.shape[0]} training samples")

    model = DiscreteNetwork(genotype, config.channels, data.num_classes, config.layers,
                            data.in_channels, config.auxiliary, 0.0).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    if config.augment:
        augment = default_augment(data.name, data.image_size, config.cutout)
    else:
        augment = Augment(cutout_size=config.cutout) if config.cutout > 0 else None
    generator = torch.Generator(device=device).manual_seed(config.seed)
    batches = DeviceBatches(train_x, train_y, config.batch_size, shuffle=True,
                            generator=generator, drop_last=True, augment=augment)

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs, eta_min=config.lr_min)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    clip = config.grad_clip if config.grad_clip else None
    params = [p for p in model.parameters()]

    from tqdm.auto import tqdm

    history: list = []
    for epoch in range(config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        model.drop_path_prob = config.drop_path_prob * epoch / config.epochs
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        synchronize(device)
        t0 = time.perf_counter()
        bar = tqdm(batches, total=len(batches), leave=False, disable=not progress,
                   desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch")
        for xb, yb in bar:
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, config.amp):
                out = model(xb)
                logits, aux_logits = out if isinstance(out, tuple) else (out, None)
                loss_main = F.cross_entropy(logits.float(), yb)
                loss = loss_main
                if aux_logits is not None:
                    loss = loss + config.auxiliary_weight * F.cross_entropy(aux_logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(params, clip)
            scaler.step(optimizer)
            scaler.update()
            n = yb.shape[0]
            loss_sum += loss_main.detach() * n
            correct += (logits.detach().argmax(1) == yb).sum()
            seen += n
        bar.close()
        synchronize(device)
        train_time = time.perf_counter() - t0
        scheduler.step()
        test_loss, test_correct = evaluate_sums(model, test_x, test_y, max(512, config.batch_size),
                                                 config.amp, channels_last)
        # The one host read of the epoch.
        tr_loss, tr_correct, te_loss, te_correct = torch.stack(
            [loss_sum, correct, test_loss, test_correct]).tolist()
        n_test = test_x.shape[0]
        te_loss, te_acc = te_loss / n_test, te_correct / n_test
        epoch_time = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "train_loss": tr_loss / seen, "train_acc": tr_correct / seen,
                  "test_loss": te_loss, "test_acc": te_acc, "lr": lr,
                  "drop_path_prob": model.drop_path_prob, "epoch_time_s": epoch_time,
                  "images_per_s": seen / train_time if train_time > 0 else float("inf")}
        history.append(record)
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f} "
                       f"acc {record['train_acc']:.4f} | test loss {te_loss:.4f} acc {te_acc:.4f} | "
                       f"{record['images_per_s']:.0f} img/s")
        if config.out is not None:
            _save_history(config.out, history)
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: train loss "
                                     f"{record['train_loss']} (try a lower lr or amp='off')")

    model.eval()
    final_acc = history[-1]["test_acc"]
    if config.out is not None:
        _save_model(config.out, model, genotype, config, data.num_classes, data.in_channels, final_acc)
    return TrainResult(history=history, test_acc=final_acc, model=model, genotype=genotype,
                       config=config, out=config.out)
