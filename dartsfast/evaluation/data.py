"""The data an evaluation or a random search trains on, loaded once for all of its runs.

Both train many networks on the same data; loading it once (and moving it to the device
once) keeps that cost out of every run's time. A random search must select on validation
data only, never on the test set: :func:`search_split` gives it exactly the two halves a
DARTS search of the same settings uses (:mod:`dartsfast.search.data_setup`: the first
``max_train_samples`` training images, split by :func:`~dartsfast.data.split_indices`
with the run's seed), packaged as an ImageDataset whose *test* part is the search's
validation half, so :func:`dartsfast.train.train` reports validation accuracy as its test
accuracy and never sees a test image.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from dartsfast.config import RunConfig
from dartsfast.data import ImageDataset, load_dataset, split_indices


def load_run_dataset(config: RunConfig, *, synthetic_size: int = 2048) -> ImageDataset:
    """The dataset ``config`` names, decoded whole on the CPU (an image folder too: one too
    large for memory cannot be evaluated this way). The synthetic set is drawn with
    ``config.seed``, so every run of an evaluation sees the same images."""
    return load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                        image_size=config.image_size, seed=config.seed, synthetic_size=synthetic_size,
                        image_mode=config.image_mode)


def search_split(dataset: ImageDataset, *, max_train_samples: Optional[int], train_fraction: float,
                 seed: int) -> ImageDataset:
    """The search's weights half as ``train_*`` and its validation (alphas) half as ``test_*``.

    The same index arithmetic as the search: first ``max_train_samples`` of the training
    set, then :func:`split_indices` (fraction, seed). The test set is dropped.
    """
    if not isinstance(dataset, ImageDataset):
        raise TypeError(f"dataset must be a dartsfast.data.ImageDataset, got {type(dataset).__name__}")
    x, y = dataset.train_x, dataset.train_y
    if max_train_samples is not None:
        x, y = x[:max_train_samples], y[:max_train_samples]
    weights_half, val_half = split_indices(x.shape[0], train_fraction, seed=seed)
    weights_half, val_half = weights_half.to(x.device), val_half.to(x.device)
    take = lambda t, idx: t.index_select(0, idx)  # noqa: E731
    return dataclasses.replace(dataset, train_x=take(x, weights_half), train_y=take(y, weights_half),
                               test_x=take(x, val_half), test_y=take(y, val_half))

