"""The evaluation protocol: train each genotype from scratch over several seeds, report its
test accuracy as mean ± sample sd beside its parameters, multiply-adds and latency.

One seed says little: the issue's probe saw 98.89-100.00% test accuracy for one genotype
over three seeds, a spread as wide as the gap to random genotypes. So every genotype is
trained ``seeds`` times (training seeds ``seed_base .. seed_base + seeds - 1``: model
init, batch order, augmentation, drop path), all on the same data loaded once, and the
comparison is between means with their sample standard deviations (n - 1).

Parameters and multiply-adds are those of the network that is deployed: the one
``train`` builds, without the training-only auxiliary head (:mod:`.costs`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from dartsfast._validate import is_int
from dartsfast.config import MAX_SEED
from dartsfast.data import ImageDataset
from dartsfast.evaluation.costs import count_multiply_adds, count_parameters, latency_record, measure_latency
from dartsfast.evaluation.data import load_run_dataset
from dartsfast.evaluation.references import GenotypeSpec, resolve_genotypes
from dartsfast.evaluation.report import write_evaluation_files, write_evaluation_json
from dartsfast.evaluation.scoring import Trainer, train_and_score
from dartsfast.rundir import run_directory
from dartsfast.runtime import resolve_device
from dartsfast.search.network import DiscreteNetwork
from dartsfast.search.space import Genotype
from dartsfast.train import TrainConfig


@dataclass
class GenotypeEvaluation:
    """One genotype's runs: ``test_acc[i]`` / ``test_loss[i]`` / ``train_time_s[i]`` of training
    seed ``seeds[i]``; ``latency``: :func:`~dartsfast.evaluation.costs.latency_record` or None."""

    label: str
    genotype: Genotype
    params: int
    multiply_adds: int
    latency: Optional[dict] = None
    seeds: list = field(default_factory=list)
    test_acc: list = field(default_factory=list)
    test_loss: list = field(default_factory=list)
    train_time_s: list = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.mean(self.test_acc)

    @property
    def sd(self) -> Optional[float]:
        """Sample standard deviation (n - 1); None for a single run, which has none."""
        return statistics.stdev(self.test_acc) if len(self.test_acc) > 1 else None

    def to_dict(self) -> dict:
        return {"label": self.label, "genotype": self.genotype.to_dict(), "seeds": list(self.seeds),
                "test_acc": list(self.test_acc), "test_acc_mean": self.mean if self.test_acc else None,
                "test_acc_sd": self.sd if self.test_acc else None, "test_loss": list(self.test_loss),
                "train_time_s": list(self.train_time_s), "params": self.params,
                "multiply_adds": self.multiply_adds, "latency": self.latency}


@dataclass
class Evaluation:
    """Every genotype's :class:`GenotypeEvaluation`, with the settings and data they share."""

    entries: list
    config: TrainConfig
    seeds: list
    dataset: dict
    complete: bool = False

    def to_dict(self) -> dict:
        return {"complete": self.complete, "seeds": list(self.seeds), "train_config": self.config.to_dict(),
                "dataset": dict(self.dataset), "multiply_adds_counted": "conv and linear layers, batch 1, eval mode",
                "torch": torch.__version__, "genotypes": [e.to_dict() for e in self.entries]}


def evaluate_genotypes(genotypes: Sequence[GenotypeSpec], config: Optional[TrainConfig] = None, *,
                       seeds: int = 3, seed_base: Optional[int] = None, latency: bool = False,
                       latency_batch: int = 1, out: Optional[str] = None,
                       dataset: Optional[ImageDataset] = None, trainer: Optional[Trainer] = None,
                       progress: bool = False, log: Callable[[str], None] = print) -> Evaluation:
    """Train each genotype ``seeds`` times from scratch with ``config`` and collect its scores.

    ``genotypes``: 'ref:NAME', genotype.json paths, Genotypes or (label, Genotype) pairs
    (:func:`~dartsfast.evaluation.references.resolve_genotypes`). ``seed_base``: the first
    training seed (default ``config.seed``). ``latency``: also time one forward of
    ``latency_batch`` images on the training device. ``out``: directory for evaluation.json
    (rewritten after each genotype), evaluation.md and evaluation.png (at the end), all
    atomic; ``config.out`` must be None (it would write a model per run). ``dataset``: a
    preloaded ImageDataset (default: ``config``'s, loaded once, synthetic drawn with
    ``seed_base``). ``trainer``: ``(genotype, config, dataset) -> Score`` (default
    :func:`~dartsfast.evaluation.scoring.train_and_score`; tests inject known scores).
    """
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if config.out is not None:
        raise ValueError("TrainConfig.out must be None in an evaluation (it would write one model per run); "
                         "give the evaluation's directory as out=")
    if not is_int(seeds) or seeds < 1:
        raise ValueError(f"seeds must be a positive int (runs per genotype), got {seeds!r}")
    seed_base = config.seed if seed_base is None else seed_base
    if not is_int(seed_base) or not 0 <= seed_base or seed_base + seeds - 1 > MAX_SEED:
        raise ValueError(f"seed_base must be an int >= 0 with seed_base + seeds - 1 <= {MAX_SEED}, got {seed_base!r}")
    if not is_int(latency_batch) or latency_batch < 1:
        raise ValueError(f"latency_batch must be a positive int, got {latency_batch!r}")
    labelled = resolve_genotypes(genotypes)
    device = resolve_device(config.device, "TrainConfig.device")
    run_seeds = list(range(seed_base, seed_base + seeds))
    trainer = functools.partial(train_and_score, progress=progress) if trainer is None else trainer
    with run_directory(out):
        if dataset is None:
            dataset = load_run_dataset(dataclasses.replace(config, seed=seed_base))
        elif not isinstance(dataset, ImageDataset):
            raise TypeError(f"dataset must be a dartsfast.data.ImageDataset or None, got {type(dataset).__name__}")
        dataset = dataset.to(device)  # once here, not once per run
        shape = (dataset.in_channels, dataset.image_size, dataset.image_size)
        evaluation = Evaluation([], config, run_seeds, {
            "name": dataset.name, "train": int(dataset.train_x.shape[0]), "test": int(dataset.test_x.shape[0]),
            "image_shape": list(shape), "num_classes": dataset.num_classes})
        for label, genotype in labelled:
            entry = _costs(label, genotype, config, dataset, device, latency, latency_batch)
            evaluation.entries.append(entry)
            for seed in run_seeds:
                t0 = time.perf_counter()
                score = trainer(genotype, dataclasses.replace(config, seed=seed), dataset)
                entry.seeds.append(seed)
                entry.test_acc.append(_checked_acc(score.acc, label, seed))
                loss = float(score.loss)
                entry.test_loss.append(loss if math.isfinite(loss) else None)  # strict JSON: no inf/NaN
                entry.train_time_s.append(time.perf_counter() - t0)
                log(f"{label} seed {seed}: test accuracy {100 * entry.test_acc[-1]:.2f}% "
                    f"({entry.train_time_s[-1]:.1f} s)")
            if out is not None:
                write_evaluation_json(out, evaluation.to_dict())
        evaluation.complete = True
        if out is not None:
            write_evaluation_files(out, evaluation.to_dict())
    return evaluation


def _checked_acc(acc: float, label: str, seed: int) -> float:
    acc = float(acc)
    if not (math.isfinite(acc) and 0.0 <= acc <= 1.0):
        raise ValueError(f"the trainer returned test accuracy {acc} for {label} seed {seed}; expected [0, 1]")
    return acc


def _costs(label: str, genotype: Genotype, config: TrainConfig, dataset: ImageDataset, device: torch.device,
           latency: bool, latency_batch: int) -> GenotypeEvaluation:
    # The deployed network: train's, without the auxiliary head (training only). Its
    # weights do not change its size or its cost, so a freshly built one is measured.
    network = DiscreteNetwork(genotype, config.channels, dataset.num_classes, config.layers, dataset.in_channels)
    image = (dataset.in_channels, dataset.image_size, dataset.image_size)
    stats = None
    if latency:
        channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
        stats = measure_latency(network, (latency_batch, *image), device, channels_last=channels_last)
    return GenotypeEvaluation(label, genotype, params=count_parameters(network),
                              multiply_adds=count_multiply_adds(network, (1, *image)),
                              latency=latency_record(stats, latency_batch, device))
