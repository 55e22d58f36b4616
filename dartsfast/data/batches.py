"""Shuffled mini-batches drawn on the device, resumable bit for bit from a state dict."""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch


class EpochOrder:
    """The order both batch iterators draw (:class:`DeviceBatches`, and the streamed twin in
    :mod:`dartsfast.data.stream`): one ``randperm(N, generator=g)`` on ``device`` per epoch,
    a position inside it, and a state dict holding both, so a run resumes bit for bit and a
    checkpoint moves between the resident and the streamed path.

    Subclasses set ``num_samples``, ``device``, ``batch_size``, ``shuffle``, ``drop_last``,
    ``generator`` and call :meth:`_start_order`; they define ``next_batch()``.
    """

    num_samples: int
    device: torch.device

    @staticmethod
    def _checked(batch_size: int, num_samples: int, generator: Optional[torch.Generator],
                 device: torch.device) -> torch.Generator:
        """The generator to draw with (None: a new one on ``device``, seeded from torch's
        global RNG), after checking the batch size and where the generator lives."""
        if not 0 < batch_size <= num_samples:
            raise ValueError(f"batch_size must be in [1, {num_samples}] (the number of samples), "
                             f"got {batch_size}")
        if generator is None:
            generator = torch.Generator(device=device)
            generator.manual_seed(int(torch.randint(2**62, (1,))))
        elif generator.device.type != device.type:
            raise ValueError(f"generator is on {generator.device}, data on {device}")
        return generator

    def _start_order(self) -> None:
        self.epoch = 0  # epochs started so far
        self._perm: Optional[torch.Tensor] = None
        self._pos = len(self)  # "current epoch finished": the next batch starts epoch 0
        self.wait_s = 0.0

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _draw_perm(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples, device=self.device)
        return torch.randperm(self.num_samples, device=self.device, generator=self.generator)

    def __iter__(self):
        if self._pos >= len(self):
            self._new_epoch()
        while self._pos < len(self):
            yield self.next_batch()

    def forever(self):
        """Endless iterator over batches, crossing epoch boundaries."""
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        """Generator state, current permutation (CPU copy) and position; for checkpoints."""
        return {"generator": self.generator.get_state(), "epoch": self.epoch,
                "position": self._pos, "batch_size": self.batch_size, "num_samples": self.num_samples,
                "perm": None if self._perm is None else self._perm.cpu()}

    def load_state_dict(self, state: dict) -> None:
        if (state["batch_size"], state["num_samples"]) != (self.batch_size, self.num_samples):
            raise ValueError(f"state is for batch_size={state['batch_size']} over "
                             f"{state['num_samples']} samples, this iterator has "
                             f"batch_size={self.batch_size} over {self.num_samples}")
        self.generator.set_state(state["generator"])
        self.epoch, self._pos = state["epoch"], state["position"]
        self._perm = None if state["perm"] is None else state["perm"].to(self.device)


class DeviceBatches(EpochOrder):
    """Shuffled mini-batches of device tensors ``x`` [N, ...], ``y`` [N], drawn on-device.

    Each epoch draws ``torch.randperm(N, device=x.device, generator=generator)`` and yields
    ``(x.index_select(0, idx), y.index_select(0, idx))`` [B, ...], [B] (then ``augment(xb,
    generator=generator)`` if given). Iterating yields the rest of the current epoch (a
    fresh one if it is finished); ``forever()`` cycles epochs endlessly — DARTS's persistent
    validation iterator, built once. ``state_dict()`` / ``load_state_dict()`` save the
    generator state and the position inside the epoch, so a resumed run draws identical
    batches. ``generator=None`` makes one on x's device, seeded from torch's global RNG.
    ``wait_s``: host seconds spent gathering batches (the streamed twin's wait for decoded
    ones; here the index_select, on a GPU only its launch), for the search's history.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 shuffle: bool = True, generator: Optional[torch.Generator] = None,
                 drop_last: bool = True,
                 augment: Optional[Callable[..., torch.Tensor]] = None):
        n = x.shape[0]
        if y.shape[:1] != (n,):
            raise ValueError(f"x has {n} samples but y has shape {tuple(y.shape)}")
        if x.device != y.device:
            raise ValueError(f"x is on {x.device} but y is on {y.device}")
        generator = self._checked(batch_size, n, generator, x.device)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.shuffle, self.drop_last, self.augment = shuffle, drop_last, augment
        self.generator = generator
        self.num_samples, self.device = n, x.device
        self._start_order()

    def _new_epoch(self) -> None:
        self._perm = self._draw_perm()
        self._pos = 0
        self.epoch += 1

    def next_batch(self):
        """The next ``(xb, yb)``, starting a new epoch when the current one is used up."""
        if self._pos >= len(self):
            self._new_epoch()
        idx = self._perm[self._pos * self.batch_size:(self._pos + 1) * self.batch_size]
        self._pos += 1
        t0 = time.perf_counter()
        xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
        self.wait_s += time.perf_counter() - t0
        if self.augment is not None:
            xb = self.augment(xb, generator=self.generator)
        return xb, yb
