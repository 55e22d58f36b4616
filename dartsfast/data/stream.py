"""Streamed mini-batches: the batches :class:`~dartsfast.data.DeviceBatches` would draw, decoded
from files by ``DataLoader`` workers when the decoded set does not fit in device memory.

The order of the batches comes from the same generator calls as DeviceBatches (one
``randperm(N, generator=g)`` on the device per epoch, then ``augment(xb, generator=g)``
per batch, on the device), so for the same seed a streamed run sees bit for bit the
batches a device-resident run sees over the decoded tensors, and the state dict has the
same schema: a checkpoint resumes on either path.

Behind it a ``torch.utils.data.DataLoader`` decodes uint8 images in ``num_workers``
processes (persistent, ``prefetch_factor`` 2 batches each in flight, pinned when the
device is CUDA); the batch is copied ``non_blocking``, converted to float and normalised on
the device. The next epoch's first batches are requested as soon as the last batch of an
epoch has been augmented (its permutation is drawn from a copy of the generator state,
then drawn for real when the epoch starts), so decoding never stops at an epoch boundary.
``wait_s`` accumulates the host time spent waiting for decoded batches.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from dartsfast.data.batches import EpochOrder
from dartsfast.data.decode import FolderImages, stats_tensors, to_float


class _Plan:
    """The DataLoader's batch sampler: the index batches the current iterator will fetch."""

    def __init__(self):
        self.batches: list = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamedBatches(EpochOrder):
    """Shuffled mini-batches of ``images[indices]`` decoded by DataLoader workers.

    ``images``: a :class:`~dartsfast.data.decode.FolderImages`; ``indices``: int64 [N]
    (CPU) into it, the samples this iterator draws from (a split, a rank's shard).
    ``mean`` / ``std``: per-channel statistics of pixels in [0, 1]. ``device``: where
    batches go (and the generator lives). The rest as :class:`DeviceBatches`. Yields
    ``(xb, yb)``: float32 [B, C, S, S] normalised, int64 [B], on ``device``. An image that
    fails to decode is replaced by a substitute (see FolderImages); ``skipped`` holds the
    indices of those seen so far. Call ``close()`` to stop the workers.
    """

    def __init__(self, images: FolderImages, indices: torch.Tensor, batch_size: int, *,
                 mean, std, device, shuffle: bool = True, generator: Optional[torch.Generator] = None,
                 drop_last: bool = True, augment: Optional[Callable[..., torch.Tensor]] = None,
                 num_workers: int = 0):
        device = torch.device(device)
        generator = self._checked(batch_size, int(indices.shape[0]), generator, device)
        self.images, self.indices = images, indices.to("cpu", torch.int64)
        self.batch_size, self.device = batch_size, device
        self.shuffle, self.drop_last, self.augment, self.generator = shuffle, drop_last, augment, generator
        self.mean, self.std = stats_tensors(mean, std, device)
        self._start_order()
        self.skipped: set = set()
        self._plan = _Plan()
        # Its own generator: a DataLoader draws its workers' base seed at every iter() from
        # torch's global RNG otherwise, shifting the drop-path masks training draws from it.
        self._loader = torch.utils.data.DataLoader(
            images, batch_sampler=self._plan, num_workers=num_workers, pin_memory=device.type == "cuda",
            persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))
        self._it = None  # the DataLoader iterator fetching self._plan
        self._ahead: Optional[torch.Tensor] = None  # the next epoch's permutation, already requested

    @property
    def num_samples(self) -> int:
        return int(self.indices.shape[0])

    # ------------------------------------------------------------------ the order
    def _new_epoch(self) -> None:
        perm = self._draw_perm()
        if self._ahead is None or not torch.equal(perm, self._ahead):
            self._request(perm, 0)  # nothing requested yet, or the generator was moved meanwhile
        self._perm, self._ahead, self._pos = perm, None, 0
        self.epoch += 1

    def _request(self, perm: torch.Tensor, start: int) -> None:
        """Point the loader at batches start.. of the epoch ordered by ``perm``; workers begin now."""
        order = self.indices[perm.cpu()]
        b = self.batch_size
        self._plan.batches = [order[k * b:(k + 1) * b].tolist() for k in range(start, len(self))]
        self._it = iter(self._loader)  # persistent workers are reset, not restarted

    def _request_next_epoch(self) -> None:
        state = self.generator.get_state()
        self._ahead = self._draw_perm()
        self.generator.set_state(state)  # drawn again, for real, when the epoch starts
        self._request(self._ahead, 0)

    # ------------------------------------------------------------------ batches
    def next_batch(self):
        """The next ``(xb, yb)``, starting a new epoch when the current one is used up."""
        if self._pos >= len(self):
            self._new_epoch()
        if self._it is None:
            self._request(self._perm, self._pos)
        t0 = time.perf_counter()
        xb, yb, failed = next(self._it)
        self.wait_s += time.perf_counter() - t0
        self._pos += 1
        if bool((failed >= 0).any()):
            self.skipped.update(failed[failed >= 0].tolist())
        xb = to_float(xb.to(self.device, non_blocking=True), self.mean, self.std)
        yb = yb.to(self.device, non_blocking=True)
        if self.augment is not None:
            xb = self.augment(xb, generator=self.generator)
        if self._pos >= len(self):  # after the augmentation's draws: the next permutation is known
            self._request_next_epoch()
        return xb, yb

    def close(self) -> None:
        """Stop the worker processes (they stop with the object too)."""
        self._it = None
        iterator = getattr(self._loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        self._loader._iterator = None

    # ------------------------------------------------------------------ checkpoints
    def load_state_dict(self, state: dict) -> None:
        """:meth:`EpochOrder.load_state_dict`, then the loader re-requests from the restored position."""
        super().load_state_dict(state)
        self._it, self._ahead = None, None
        if self._perm is not None and self._pos >= len(self):
            self._request_next_epoch()
