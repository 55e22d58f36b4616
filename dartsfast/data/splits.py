"""A set of samples the loops draw batches from, resident on the device or streamed from files.

Both kinds answer the same questions, so the search and training loops do the same
index arithmetic on either (first N, a DARTS split, a rank's shard) and get the same
samples: :class:`TensorSplit` gathers tensors, :class:`StreamSplit` keeps the indices
and decodes at batch time. ``batches(...)`` gives a DeviceBatches or a StreamedBatches
(same interface, same batches for the same generator); ``in_order(b)`` the whole set in
order, for evaluation.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch

from dartsfast.data.batches import DeviceBatches
from dartsfast.data.decode import FolderImages
from dartsfast.data.stream import StreamedBatches


class TensorSplit:
    """``x`` [N, C, H, W] float32, ``y`` [N] int64, on the device."""

    streamed = False

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def head(self, n: Optional[int]) -> "TensorSplit":
        return self if n is None else TensorSplit(self.x[:n], self.y[:n])

    def take(self, idx: torch.Tensor) -> "TensorSplit":
        idx = idx.to(self.x.device)
        return TensorSplit(self.x.index_select(0, idx), self.y.index_select(0, idx))

    def shard(self, rank: int, world: int) -> "TensorSplit":
        return TensorSplit(self.x[rank::world], self.y[rank::world])

    def batches(self, batch_size: int, **kwargs) -> DeviceBatches:
        return DeviceBatches(self.x, self.y, batch_size, **kwargs)

    def in_order(self, batch_size: int) -> Iterator:
        return ((self.x[s:s + batch_size], self.y[s:s + batch_size]) for s in range(0, len(self), batch_size))

    @property
    def skipped(self) -> set:
        return set()

    def close(self) -> None:
        pass


class StreamSplit:
    """``images[indices]`` decoded on demand, normalised by ``mean`` / ``std`` on ``device``,
    by DataLoaders with ``num_workers`` processes each."""

    streamed = True

    def __init__(self, images: FolderImages, indices: torch.Tensor, *, mean, std, device, num_workers: int = 0,
                 _opened: Optional[list] = None):
        self.images, self.indices = images, indices.to("cpu", torch.int64)
        self.mean, self.std, self.device, self.num_workers = mean, std, torch.device(device), num_workers
        self._opened: list = [] if _opened is None else _opened  # shared with the splits made from this one
        self._ordered: Optional[StreamedBatches] = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def _like(self, indices: torch.Tensor) -> "StreamSplit":
        return StreamSplit(self.images, indices, mean=self.mean, std=self.std, device=self.device,
                           num_workers=self.num_workers, _opened=self._opened)

    def head(self, n: Optional[int]) -> "StreamSplit":
        return self if n is None else self._like(self.indices[:n])

    def take(self, idx: torch.Tensor) -> "StreamSplit":
        return self._like(self.indices[idx.cpu()])

    def shard(self, rank: int, world: int) -> "StreamSplit":
        return self._like(self.indices[rank::world])

    def batches(self, batch_size: int, **kwargs) -> StreamedBatches:
        b = StreamedBatches(self.images, self.indices, batch_size, mean=self.mean, std=self.std,
                            device=self.device, num_workers=self.num_workers, **kwargs)
        self._opened.append(b)
        return b

    def in_order(self, batch_size: int) -> Iterator:
        if self._ordered is None:  # kept: its workers start on the next pass as this one ends
            # An explicit generator (unused: no shuffling) leaves torch's global RNG alone.
            self._ordered = self.batches(min(batch_size, len(self)), shuffle=False, drop_last=False,
                                         generator=torch.Generator(device=self.device))
        return iter(self._ordered)

    @property
    def skipped(self) -> set:
        """Paths that failed to decode in the iterators of this split and of every split made from it."""
        return {self.images.samples[i][0] for b in self._opened for i in b.skipped}

    def close(self) -> None:
        """Stop the workers of this split's iterators and those of every split made from it."""
        for b in self._opened:
            b.close()
