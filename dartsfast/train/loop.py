"""Training the discrete network of a genotype from scratch (DARTS evaluation).

DARTS evaluation (Liu et al. 2019, §3.2): stack ``layers`` copies of the found cells
(:class:`~dartsfast.search.network.DiscreteNetwork`), train with SGD + cosine LR, drop
path, cutout and an optional auxiliary head, and report held-out test accuracy.

The loop follows DESIGN §4: the whole dataset lives on the device (``dartsfast.data``),
batches and augmentation are drawn there, and loss/accuracy are accumulated as device
tensors read once per epoch — no ``.item()`` per step, so a GPU is never stalled by the host.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from dartsfast.data import Augment, ImageDataset, RunData, default_augment, open_run_data
from dartsfast.rundir import run_directory
from dartsfast.runtime import (
    autocast,
    evaluate_batch_sums,
    evaluate_sums,
    optimizer_options,
    resolve_device,
    synchronize,
)
from dartsfast.search.memory import check_run_fits
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.space import MULTIPLIER, Genotype, PathLike
from dartsfast.train.config import TrainConfig
from dartsfast.train.files import save_history, save_model


@dataclass
class TrainResult:
    """``history``: one dict per epoch (epoch, train_loss, train_acc, test_loss, test_acc,
    lr, drop_path_prob, epoch_time_s, images_per_s, data_wait_s, skipped_images); ``test_acc``: final test accuracy in
    [0, 1]; ``model``: the trained network (eval mode, on the training device)."""

    history: list
    test_acc: float
    model: DiscreteNetwork
    genotype: Genotype
    config: TrainConfig
    out: Optional[str] = None


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
            genotype = Genotype.load(genotype)
        else:
            raise TypeError(f"genotype must be a Genotype or a path, got {type(genotype).__name__}")
    device = resolve_device(config.device, "TrainConfig.device")
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    if dataset is not None and not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dartsfast.data.ImageDataset or None, got {type(dataset).__name__}")
    # Lower bound: each cell's output, the concatenation of its MULTIPLIER nodes, is kept.
    check_run_fits(config, device, dataset, ops_per_edge=1, edges_per_cell=MULTIPLIER)
    with run_directory(config.out):
        return _train(genotype, config, device, channels_last, progress, dataset)


def _train(genotype: Genotype, config: TrainConfig, device: torch.device, channels_last: bool,
           progress: bool, dataset: Optional[ImageDataset]) -> TrainResult:
    torch.manual_seed(config.seed)  # model init and drop-path masks
    # Resident on the device, or (an image folder too large for it) streamed from the files.
    data = open_run_data(config.dataset, device=device, data_dir=config.data_dir, download=config.download,
                         image_size=config.image_size, image_mode=config.image_mode, seed=config.seed,
                         data_memory_gb=config.data_memory_gb, data_workers=config.data_workers,
                         dataset=dataset)
    try:
        return _train_on(data, genotype, config, device, channels_last, progress)
    finally:
        data.close()  # a streamed set's DataLoader workers


def _train_on(data: RunData, genotype: Genotype, config: TrainConfig, device: torch.device, channels_last: bool,
              progress: bool) -> TrainResult:
    train_split, test_split = data.train.head(config.max_train_samples), data.test.head(config.max_test_samples)
    if config.batch_size > len(train_split):
        raise ValueError(f"TrainConfig.batch_size {config.batch_size} exceeds the "
                         f"{len(train_split)} training samples")

    model = DiscreteNetwork(genotype, config.channels, data.num_classes, config.layers,
                            data.in_channels, config.auxiliary, 0.0).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    if config.augment:
        augment = default_augment(data.name, data.image_size, config.cutout)
    else:
        augment = Augment(cutout_size=config.cutout) if config.cutout > 0 else None
    generator = torch.Generator(device=device).manual_seed(config.seed)
    batches = train_split.batches(config.batch_size, shuffle=True, generator=generator, drop_last=True,
                                  augment=augment)

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, **optimizer_options(device, config.amp))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs, eta_min=config.lr_min)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16")
    clip = config.grad_clip if config.grad_clip else None
    params = [p for p in model.parameters()]

    from tqdm.auto import tqdm  # lazy: a heavy optional dependency, not loaded by `import dartsfast`

    history: list = []
    for epoch in range(config.epochs):
        lr = optimizer.param_groups[0]["lr"]
        model.drop_path_prob = config.drop_path_prob * epoch / config.epochs
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        seen = 0
        synchronize(device)
        batches.wait_s = 0.0
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
                nn.utils.clip_grad_norm_(params, clip, foreach=True)
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
        test_loss, test_correct = evaluate_batch_sums(model, test_split.in_order(max(512, config.batch_size)),
                                                      device, config.amp, channels_last)
        # The one host read of the epoch.
        tr_loss, tr_correct, te_loss, te_correct = torch.stack(
            [loss_sum, correct, test_loss, test_correct]).tolist()
        n_test = len(test_split)
        te_loss, te_acc = te_loss / n_test, te_correct / n_test
        epoch_time = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "train_loss": tr_loss / seen, "train_acc": tr_correct / seen,
                  "test_loss": te_loss, "test_acc": te_acc, "lr": lr,
                  "drop_path_prob": model.drop_path_prob, "epoch_time_s": epoch_time,
                  "images_per_s": seen / train_time if train_time > 0 else float("inf"),
                  "data_wait_s": batches.wait_s, "skipped_images": data.skipped_images()}
        history.append(record)
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{config.epochs}: train loss {record['train_loss']:.4f} "
                       f"acc {record['train_acc']:.4f} | test loss {te_loss:.4f} acc {te_acc:.4f} | "
                       f"{record['images_per_s']:.0f} img/s")
        if config.out is not None:
            save_history(config.out, history)
        if not math.isfinite(record["train_loss"]):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: train loss "
                                     f"{record['train_loss']} (try a lower lr or amp='off')")

    model.eval()
    final_acc = history[-1]["test_acc"]
    if config.out is not None:
        save_model(config.out, model, genotype, config, data.num_classes, data.in_channels, final_acc)
    return TrainResult(history=history, test_acc=final_acc, model=model, genotype=genotype,
                       config=config, out=config.out)
