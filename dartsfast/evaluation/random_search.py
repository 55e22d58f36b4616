"""Random search over the DARTS space: the baseline a search result must beat.

Genotypes are drawn uniformly under derivation's constraints
(:mod:`dartsfast.search.random_genotypes`), each is trained briefly from scratch on the
search's weights half and scored on its validation half (:func:`.data.search_split`; the
test set is never touched), and the one with the best validation accuracy (ties: the
lower validation loss, then the earlier sample) is kept.

The budget (:class:`Budget`) is what makes the comparison with a DARTS run fair: total
training epochs split evenly over the samples, or a sample count and epochs per sample,
and/or wall seconds measured on the run's own clock from its start (data loading
included, as in a search's time). With seconds, sampling stops when the next sample would
not fit: the time so far plus the longest sample yet exceeds the budget.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from dartsfast._io import write_json
from dartsfast._validate import is_int, is_real
from dartsfast.data import ImageDataset
from dartsfast.evaluation.data import load_run_dataset, search_split
from dartsfast.evaluation.scoring import Score, Trainer, train_and_score
from dartsfast.rundir import run_directory
from dartsfast.runtime import resolve_device
from dartsfast.search.random_genotypes import GenotypeStream
from dartsfast.search.space import DEFAULT_OPS, GENOTYPE_FILE, Genotype
from dartsfast.train import TrainConfig

HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class Budget:
    """How much a random search may train. Give ``samples``, ``total_epochs`` or ``seconds``
    (or several): ``epochs_per_sample`` is taken as given, else ``total_epochs // samples``
    when both are given, else 1; the sample count is ``samples``, else
    ``total_epochs // epochs_per_sample``, else as many as ``seconds`` allow.
    """

    samples: Optional[int] = None
    epochs_per_sample: Optional[int] = None
    total_epochs: Optional[int] = None
    seconds: Optional[float] = None

    def __post_init__(self) -> None:
        for name in ("samples", "epochs_per_sample", "total_epochs"):
            value = getattr(self, name)
            if value is not None and (not is_int(value) or value < 1):
                raise ValueError(f"Budget.{name} must be None or a positive int, got {value!r}")
        if self.seconds is not None and not (is_real(self.seconds) and self.seconds > 0):
            raise ValueError(f"Budget.seconds must be None or a finite number > 0, got {self.seconds!r}")
        if self.samples is None and self.total_epochs is None and self.seconds is None:
            raise ValueError("give the random search a budget: samples (with epochs per sample), "
                             "total epochs, or seconds")

    def plan(self) -> tuple[Optional[int], int]:
        """``(most samples or None for as many as the seconds allow, epochs per sample)``;
        ValueError when the epochs cannot pay for one sample."""
        epochs = self.epochs_per_sample
        if epochs is None:
            if self.total_epochs is not None and self.samples is not None:
                epochs = self.total_epochs // self.samples
                if epochs == 0:
                    raise ValueError(f"a budget of {self.total_epochs} epoch(s) is too small for {self.samples} "
                                     f"samples of at least one epoch; give at least {self.samples} epochs "
                                     "or fewer samples")
            else:
                epochs = 1
        samples = self.samples
        if self.total_epochs is not None:
            affordable = self.total_epochs // epochs
            if affordable == 0:
                raise ValueError(f"a budget of {self.total_epochs} epoch(s) is too small for one sample of "
                                 f"{epochs} epochs; raise the budget or lower the epochs per sample")
            if samples is not None and samples * epochs > self.total_epochs:
                raise ValueError(f"{samples} samples of {epochs} epochs need {samples * epochs} epochs, "
                                 f"more than the budget of {self.total_epochs}")
            samples = affordable if samples is None else samples
        return samples, epochs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class RandomSearchResult:
    """``history``: one record per trained sample (see :func:`random_search`); ``best``: the
    record of the kept genotype; ``genotype``: that genotype."""

    genotype: Genotype
    best: dict
    history: list
    epochs_per_sample: int
    elapsed_s: float
    out: Optional[str] = None


def random_search(config: Optional[TrainConfig], budget: Budget, *, ops: Sequence[str] = DEFAULT_OPS,
                  train_fraction: float = 0.5, synthetic_size: int = 2048, out: Optional[str] = None,
                  dataset: Optional[ImageDataset] = None, trainer: Optional[Trainer] = None,
                  clock: Callable[[], float] = time.perf_counter, progress: bool = False,
                  log: Callable[[str], None] = print) -> RandomSearchResult:
    """Sample genotypes of ``ops`` with seed ``config.seed``, train each with ``config`` (its
    ``epochs`` replaced by the budget's epochs per sample; ``max_train_samples`` caps the
    set before the split, as in a search) and keep the best by validation accuracy.

    ``train_fraction``: the weights' share of the training set, as SearchConfig's. ``out``:
    directory for genotype.json (the best so far) and history.json (the list of records),
    both rewritten atomically after every sample. ``dataset``: a preloaded ImageDataset.
    ``trainer`` / ``clock``: injectable for tests (a trainer returns a Score; the clock
    gives seconds). Each history record holds sample, genotype (dict), val_acc, val_loss,
    epochs, seed, time_s (its training), elapsed_s (the run's time after it), and the
    running best: best_sample, best_val_acc, best_val_loss.
    """
    start = clock()
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if config.out is not None:
        raise ValueError("TrainConfig.out must be None in a random search (it would write one model per "
                         "sample); give the search's directory as out=")
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be a Budget, got {type(budget).__name__}")
    max_samples, epochs = budget.plan()
    stream = GenotypeStream(config.seed, ops)  # checks the op list before any data is loaded
    sample_config = dataclasses.replace(config, epochs=epochs, max_train_samples=None, max_test_samples=None)
    device = resolve_device(config.device, "TrainConfig.device")
    trainer = functools.partial(train_and_score, progress=progress) if trainer is None else trainer
    with run_directory(out):
        if dataset is None:
            dataset = load_run_dataset(config, synthetic_size=synthetic_size)
        elif not isinstance(dataset, ImageDataset):
            raise TypeError(f"dataset must be a dartsfast.data.ImageDataset or None, got {type(dataset).__name__}")
        split = search_split(dataset, max_train_samples=config.max_train_samples, train_fraction=train_fraction,
                             seed=config.seed).to(device)
        history: list = []
        best: Optional[dict] = None
        best_genotype: Optional[Genotype] = None
        longest = 0.0
        while max_samples is None or len(history) < max_samples:
            if budget.seconds is not None and not _next_fits(budget.seconds, clock() - start, longest, history):
                break
            genotype = stream.next()
            t0 = clock()
            try:
                score: Optional[Score] = trainer(genotype, sample_config, split)
                diverged = None
            except FloatingPointError as e:
                # A genotype whose training diverges at these settings is a bad sample, not
                # the end of the search: recorded, never kept.
                score, diverged = None, str(e)
            took = clock() - t0
            longest = max(longest, took)
            record = {"sample": len(history) + 1, "genotype": genotype.to_dict(),
                      "val_acc": None if score is None else _checked_acc(score.acc),
                      "val_loss": None if score is None else _finite_or_none(score.loss),
                      "epochs": epochs, "seed": config.seed, "time_s": took, "elapsed_s": clock() - start}
            if diverged is not None:
                record["diverged"] = diverged
            if budget.seconds is not None and not history and record["elapsed_s"] > budget.seconds:
                raise ValueError(f"a budget of {budget.seconds:g} s is too small for one sample: the first took "
                                 f"{took:.1f} s ({record['elapsed_s']:.1f} s with loading the data); raise the "
                                 "seconds or lower the epochs per sample, --layers or --channels")
            if record["val_acc"] is not None and (best is None or _better(record, best)):
                best, best_genotype = record, genotype
            record.update({f"best_{key}": best[key] if best else None for key in ("sample", "val_acc", "val_loss")})
            history.append(record)
            log(f"sample {record['sample']}: " + (f"val accuracy {100 * record['val_acc']:.2f}%"
                if diverged is None else "training diverged") + f" ({took:.1f} s); "
                + (f"best {100 * best['val_acc']:.2f}% (sample {best['sample']})" if best else "no best yet"))
            if out is not None and best_genotype is not None:
                # The best first: a run stopped between the two writes keeps a history whose
                # running best is the genotype on disk or an earlier one, never a later one.
                best_genotype.save(os.path.join(out, GENOTYPE_FILE))
                write_json(os.path.join(out, HISTORY_FILE), history)
    if best is None:
        raise FloatingPointError(f"the training of all {len(history)} sampled genotype(s) diverged; "
                                 "lower --lr or use --amp off")
    return RandomSearchResult(best_genotype, best, history, epochs, clock() - start, out)


def _next_fits(seconds: float, elapsed: float, longest: float, history: list) -> bool:
    """Whether another sample fits: the first always starts unless the time is already spent
    (loading the data); a later one when the time so far plus the longest sample yet fits."""
    if not history:
        if elapsed >= seconds:
            raise ValueError(f"a budget of {seconds:g} s is too small for one sample: loading the data "
                             f"alone took {elapsed:.1f} s")
        return True
    return elapsed + longest <= seconds


def _better(record: dict, best: dict) -> bool:
    """Higher validation accuracy wins; at equal accuracy the lower loss (a missing one never wins)."""
    if record["val_acc"] != best["val_acc"]:
        return record["val_acc"] > best["val_acc"]
    loss, best_loss = record["val_loss"], best["val_loss"]
    return loss is not None and (best_loss is None or loss < best_loss)


def _checked_acc(acc: float) -> float:
    acc = float(acc)
    if not (math.isfinite(acc) and 0.0 <= acc <= 1.0):
        raise ValueError(f"the trainer returned validation accuracy {acc}; expected a number in [0, 1]")
    return acc


def _finite_or_none(loss: float) -> Optional[float]:
    # history.json is strict JSON: an infinite loss is written as null.
    loss = float(loss)
    return loss if math.isfinite(loss) else None
