"""Training one genotype once and reading its held-out score: the step an evaluation and a
random search repeat, kept behind one signature so tests can inject known scores.

A trainer is ``trainer(genotype, config, dataset) -> Score``: train ``genotype`` from
scratch with ``config`` on ``dataset``'s training part and score it on its held-out part
(the test set in an evaluation, the search's validation half in a random search).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from dartsfast.data import ImageDataset
from dartsfast.search.space import Genotype
from dartsfast.train import TrainConfig, train


class Score(NamedTuple):
    """Accuracy in [0, 1] and mean cross-entropy on the held-out part, after the last epoch."""

    acc: float
    loss: float


Trainer = Callable[[Genotype, TrainConfig, ImageDataset], Score]


def train_and_score(genotype: Genotype, config: TrainConfig, dataset: ImageDataset, *,
                    progress: bool = False) -> Score:
    """:func:`dartsfast.train.train` of ``genotype`` on ``dataset``, scored after its last epoch."""
    result = train(genotype, config, progress=progress, dataset=dataset)
    last = result.history[-1]
    return Score(float(last["test_acc"]), float(last["test_loss"]))
