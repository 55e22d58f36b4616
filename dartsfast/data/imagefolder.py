"""A user's image folder as a data source: scanned, sized, with its normalisation statistics,
decodable whole (device-resident path) or per image (streamed path).

Which path a run takes is :func:`fits_in_memory`'s call: the decoded set (train + test,
float32 ``N x C x S x S x 4`` bytes) against ``data_memory_gb`` GiB, or by default a
quarter of the device's memory (CUDA total memory, physical RAM on a CPU), leaving three
quarters for the network, its activations and the optimisers; 0 always streams.
"""
from __future__ import annotations

from typing import Optional

import torch

from dartsfast.data.decode import FolderImages, channel_stats, decode_all, default_image_size, stats_tensors, to_float
from dartsfast.data.folders import FolderScan, scan_image_folder
from dartsfast.runtime import device_memory_bytes

DEFAULT_DATA_MEMORY_SHARE = 0.25  # of the device's memory for the decoded set, when data_memory_gb is None
_FLOAT32 = 4
_GiB = 2**30


class ImageFolderSource:
    """``data_dir`` scanned (:func:`~dartsfast.data.folders.scan_image_folder`) and ready to
    decode at ``image_size`` (None: min(32, the median shorter side)). ``train_images`` /
    ``test_images``: :class:`~dartsfast.data.decode.FolderImages`; ``mean`` / ``std``: per-
    channel statistics from a seeded sample of at most 2000 training images."""

    def __init__(self, data_dir, image_size: Optional[int] = None, image_mode: str = "auto"):
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.scan: FolderScan = scan_image_folder(data_dir, image_mode)
        self.image_size = image_size or default_image_size(self.scan.median_side)
        self.train_images = FolderImages(self.scan.train, self.scan.mode, self.image_size)
        self.test_images = FolderImages(self.scan.test, self.scan.mode, self.image_size)
        self.mean, self.std, self.stats_failed = channel_stats(self.train_images)

    @property
    def num_classes(self) -> int:
        return len(self.scan.classes)

    @property
    def in_channels(self) -> int:
        return self.scan.in_channels

    def decoded_bytes(self) -> int:
        """float32 bytes of the whole decoded set (train + test)."""
        n = len(self.train_images) + len(self.test_images)
        return n * self.in_channels * self.image_size ** 2 * _FLOAT32

    def decode(self) -> tuple:
        """(train_x, train_y, test_x, test_y, failed paths): normalised float32 on the CPU,
        images that do not decode dropped and listed."""
        mean, std = stats_tensors(self.mean, self.std, "cpu")
        tx, ty, failed = decode_all(self.train_images)
        vx, vy, failed_test = decode_all(self.test_images)
        return to_float(tx, mean, std), ty, to_float(vx, mean, std), vy, failed + failed_test


def data_budget_bytes(device: torch.device, data_memory_gb: Optional[float]) -> int:
    """The device memory the decoded data may take (see the module docstring)."""
    if data_memory_gb is None:
        return int(device_memory_bytes(device) * DEFAULT_DATA_MEMORY_SHARE)
    return int(data_memory_gb * _GiB)


def fits_in_memory(source: ImageFolderSource, device: torch.device, data_memory_gb: Optional[float]) -> tuple:
    """(fits?, one line saying which path and why)."""
    need, budget = source.decoded_bytes(), data_budget_bytes(device, data_memory_gb)
    rule = "--data-memory-gb" if data_memory_gb is not None else "a quarter of the device's memory"
    fits = 0 < budget and need <= budget
    how = "device-resident" if fits else "streamed from the files by DataLoader workers"
    return fits, (f"imagefolder: decoded set {need / 2**20:.1f} MiB {'fits' if fits else 'exceeds'} the "
                  f"{budget / 2**20:.1f} MiB data budget ({rule}) on {device.type}: {how}")
