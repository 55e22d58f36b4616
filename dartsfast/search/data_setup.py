"""The search's data: the training set split into the weights' and the alphas' halves, each
rank's shard of both, and their batch iterators, resident on the device or streamed.

The index arithmetic is the same on both paths (first ``max_train_samples``, the DARTS
split of :func:`~dartsfast.data.split_indices`, DistributedSampler's ``[rank::world]``),
and so are the generators (seed * 1000 + 2 * rank for the weights' batches, + 1 for the
alphas'), so a streamed search draws the batches a resident one draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from dartsfast.data import ImageDataset, RunData, default_augment, open_run_data, split_indices
from dartsfast.search import distributed
from dartsfast.search.config import SearchConfig


@dataclass
class SearchData:
    """``train_batches`` / ``val_batches``: this rank's iterators over the weights' and the
    alphas' halves; ``val``: the alphas' half (this rank's shard), evaluated after each epoch."""

    data: RunData
    train_batches: object
    val_batches: object
    val: object

    def val_in_order(self, batch_size: int) -> Iterator:
        return self.val.in_order(batch_size)

    def take_wait_s(self) -> float:
        """Host seconds the steps waited for batches since the last call (then reset)."""
        wait = self.train_batches.wait_s + self.val_batches.wait_s
        self.train_batches.wait_s = self.val_batches.wait_s = 0.0
        return wait

    def skipped_images(self) -> int:
        return self.data.skipped_images()

    def close(self) -> None:
        self.data.close()


def build_search_data(config: SearchConfig, device: torch.device, ctx: distributed.DistContext,
                      dataset: Optional[ImageDataset]) -> SearchData:
    log = print if ctx.is_main else (lambda line: None)
    data = open_run_data(config.dataset, device=device, data_dir=config.data_dir, download=config.download,
                         image_size=config.image_size, image_mode=config.image_mode, seed=config.seed,
                         synthetic_size=config.synthetic_size, data_memory_gb=config.data_memory_gb,
                         data_workers=config.data_workers, dataset=dataset, log=log)
    try:
        return _batches(config, device, ctx, data)
    except BaseException:
        data.close()
        raise


def _batches(config: SearchConfig, device: torch.device, ctx: distributed.DistContext, data: RunData) -> SearchData:
    train = data.train.head(config.max_train_samples)
    tr, va = split_indices(len(train), config.train_fraction, seed=config.seed)
    # Each rank draws from its own slice of both halves (DistributedSampler's split).
    r, w = ctx.rank, ctx.world_size
    tr_split, va_split = train.take(tr).shard(r, w), train.take(va).shard(r, w)
    for name, split in (("training", tr_split), ("validation", va_split)):
        if config.batch_size > len(split):
            raise ValueError(f"SearchConfig.batch_size {config.batch_size} exceeds the {len(split)} samples of "
                             f"this rank's {name} half; lower it or use more data")
    augment = default_augment(data.name, data.image_size) if config.augment else None
    gen_train = torch.Generator(device=device).manual_seed(config.seed * 1000 + 2 * r)
    gen_val = torch.Generator(device=device).manual_seed(config.seed * 1000 + 2 * r + 1)
    return SearchData(data, tr_split.batches(config.batch_size, generator=gen_train, augment=augment),
                      va_split.batches(config.batch_size, generator=gen_val, augment=augment), va_split)
