"""A run's data, whichever dataset: the training and test sets as splits on a device.

The built-in datasets load whole (:func:`~dartsfast.data.load_dataset`) and live on the
device. An image folder is scanned, and then decoded whole onto the device when it fits
the data budget (:func:`~dartsfast.data.imagefolder.fits_in_memory`), else streamed
from its files by DataLoader workers; one printed line says which.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch

from dartsfast.data.datasets import ImageDataset, load_dataset
from dartsfast.data.imagefolder import ImageFolderSource, fits_in_memory
from dartsfast.data.splits import StreamSplit, TensorSplit

Split = Union[TensorSplit, StreamSplit]


def default_workers() -> int:
    """DataLoader workers per streamed iterator: half the cores, 1 to 4. A search holds three
    iterators (training half, validation half, its evaluation), so on 2 cores that is 3
    worker processes beside the step; decoding measured 0.3 ms an image (small PNG/JPEG to
    32x32, busy 2-core VM), ~20 ms a batch of 64, against search steps of seconds on a CPU."""
    return max(1, min(4, (os.cpu_count() or 2) // 2))


@dataclass
class RunData:
    """``train`` / ``test``: the training set (search splits it into weights and alphas
    halves) and the held-out test set. ``skipped_at_load``: paths of images skipped before
    the first batch (unreadable headers, and undecodable images on the resident path)."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    train: Split
    test: Split
    skipped_at_load: set = field(default_factory=set)

    @property
    def streamed(self) -> bool:
        return self.train.streamed

    def skipped_images(self) -> int:
        """Distinct images skipped so far: at load, and by the streamed iterators since."""
        return len(self.skipped_at_load | self.train.skipped | self.test.skipped)

    def close(self) -> None:
        self.train.close()
        self.test.close()


def open_run_data(name: str, *, device: torch.device, data_dir=None, download: bool = False,
                  image_size: Optional[int] = None, image_mode: str = "auto", seed: int = 0,
                  synthetic_size: int = 2048, data_memory_gb: Optional[float] = None,
                  data_workers: Optional[int] = None, dataset: Optional[ImageDataset] = None,
                  log: Callable[[str], None] = print) -> RunData:
    """The data of a run (see the module docstring). ``dataset``: a preloaded ImageDataset
    instead of loading ``name``. ``log`` receives the image folder's two report lines."""
    if dataset is None and name == "imagefolder":
        source = ImageFolderSource(data_dir, image_size, image_mode)
        log(source.scan.report())
        fits, line = fits_in_memory(source, device, data_memory_gb)
        log(line)
        corrupt = set(source.scan.corrupt)
        if fits:
            tx, ty, vx, vy, failed = source.decode()
            if failed:
                log(f"imagefolder: {len(failed)} image(s) did not decode and were dropped (first: {failed[0]})")
            dataset = ImageDataset("imagefolder", tx, ty, vx, vy, num_classes=source.num_classes,
                                   in_channels=source.in_channels, image_size=source.image_size,
                                   mean=source.mean, std=source.std)
            corrupt |= set(failed)
        else:
            workers = default_workers() if data_workers is None else data_workers
            stream = lambda images: StreamSplit(images, torch.arange(len(images)), mean=source.mean,  # noqa: E731
                                                std=source.std, device=device, num_workers=workers)
            return RunData("imagefolder", source.num_classes, source.in_channels, source.image_size,
                           stream(source.train_images), stream(source.test_images),
                           corrupt | set(source.stats_failed))
        data = dataset.to(device)
        return RunData("imagefolder", data.num_classes, data.in_channels, data.image_size,
                       TensorSplit(data.train_x, data.train_y), TensorSplit(data.test_x, data.test_y), corrupt)
    if dataset is None:
        dataset = load_dataset(name, data_dir=data_dir, download=download, image_size=image_size, seed=seed,
                               synthetic_size=synthetic_size)
    data = dataset.to(device)
    return RunData(data.name, data.num_classes, data.in_channels, data.image_size,
                   TensorSplit(data.train_x, data.train_y), TensorSplit(data.test_x, data.test_y))
