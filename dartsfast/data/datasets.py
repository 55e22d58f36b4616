"""Datasets as whole tensors: loaders for the names in ``DATASETS`` and the DARTS train/val split.

Every dataset is decoded once into normalised float32 tensors (``ImageDataset``), to be
moved to the device once; see :mod:`dartsfast.data` for why.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from dartsfast.config import DATASETS
from dartsfast.data import files
from dartsfast.data.imagefolder import ImageFolderSource

# Standard per-channel statistics of the training sets (pixels in [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

_FMNIST_FILES, _CIFAR_FILES = files.FASHION_MNIST_FILES, files.CIFAR10_FILES


@dataclass
class ImageDataset:
    """A whole image-classification dataset held as tensors (on one device).

    ``train_x`` [N, C, H, W] float32, normalised; ``train_y`` [N] int64 in [0, num_classes);
    ``test_x`` [M, C, H, W], ``test_y`` [M]: the held-out test set (never used by search).
    ``mean`` / ``std``: the per-channel statistics that were subtracted / divided (pixel
    values in [0, 1]), kept so plots can undo the normalisation.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple = ()
    std: tuple = ()

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def to(self, device, non_blocking: bool = False) -> "ImageDataset":
        """Return a copy with all four tensors on ``device`` (one transfer each, done once)."""
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return dataclasses.replace(self, train_x=move(self.train_x), train_y=move(self.train_y),
                                   test_x=move(self.test_x), test_y=move(self.test_y))

    def __repr__(self) -> str:  # the default repr would print every tensor
        return (f"ImageDataset(name={self.name!r}, train={tuple(self.train_x.shape)}, "
                f"test={tuple(self.test_x.shape)}, num_classes={self.num_classes}, "
                f"device={self.device})")


# ----------------------------------------------------------------------------- loading

def load_dataset(name: str, *, data_dir: Optional[str] = None, download: bool = False,
                 image_size: Optional[int] = None, seed: int = 0, synthetic_size: int = 2048,
                 synthetic_classes: int = 10, synthetic_channels: int = 3,
                 image_mode: str = "auto") -> ImageDataset:
    """Load dataset ``name`` (one of ``DATASETS``) as CPU tensors; call ``.to(device)`` after.

    ``image_size``: output side length (bilinear resize); default is the native size
    (digits: 16, fashion-mnist: 28, cifar10: 32, synthetic: 16, imagefolder: min(32, the
    median shorter side)). ``imagefolder`` reads ``data_dir`` (:mod:`dartsfast.data.folders`;
    ``image_mode`` 'auto' | 'rgb' | 'gray'), decoded whole, undecodable images dropped; for
    streaming a folder too large for memory see :mod:`dartsfast.data.sources`. ``seed`` seeds only the
    synthetic data: the digits train/test split is fixed so every run holds out the same
    test images. ``synthetic_*``: total samples, classes and channels of ``synthetic``.
    Raises ``FileNotFoundError`` (saying what to put where) when a torchvision dataset is
    absent and ``download`` is False; ``ValueError`` for an unknown name, and for a dataset
    file that is damaged (empty, truncated, garbage, wrong shapes or labels, a directory),
    naming the file and what is wrong (see :mod:`dartsfast.data.files`).
    """
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if name == "digits":
        return _load_digits(16 if image_size is None else image_size)
    if name == "fashion-mnist":
        return _load_fashion_mnist(data_dir, download, image_size)
    if name == "cifar10":
        return _load_cifar10(data_dir, download, image_size)
    if name == "imagefolder":
        source = ImageFolderSource(data_dir, image_size, image_mode)
        tx, ty, vx, vy, _ = source.decode()
        return ImageDataset("imagefolder", tx, ty, vx, vy, num_classes=source.num_classes,
                            in_channels=source.in_channels, image_size=source.image_size,
                            mean=source.mean, std=source.std)
    if name == "synthetic":
        return make_synthetic(synthetic_size, num_classes=synthetic_classes,
                              in_channels=synthetic_channels,
                              image_size=16 if image_size is None else image_size, seed=seed)
    raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")


def _resize(x: torch.Tensor, size: Optional[int]) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], bilinear (antialiased when shrinking)."""
    if size is None or size == x.shape[-1]:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


def _normalise(x: torch.Tensor, mean, std) -> torch.Tensor:
    """In place: (x - mean[c]) / std[c] for [N, C, H, W]."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _load_digits(image_size: int) -> ImageDataset:
    # lazy: sklearn is a heavy optional dependency, not loaded by `import dartsfast`
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if image_size < 8:
        raise ValueError(f"digits are 8x8: image_size must be >= 8, got {image_size}")
    bunch = load_digits()
    # Fixed stratified 80/20 split (random_state=0): 1437 train / 360 test, every class in both.
    idx_train, idx_test = train_test_split(np.arange(len(bunch.target)), test_size=0.2,
                                           stratify=bunch.target, random_state=0)
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)  # [1797,1,8,8]
    x = _resize(x, image_size)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train_x, test_x = x[idx_train], x[idx_test]
    # No published statistics for upsampled digits: use the train set's own (never the test's).
    mean, std = (train_x.mean().item(),), (train_x.std().item(),)
    return ImageDataset("digits", _normalise(train_x, mean, std), y[idx_train],
                        _normalise(test_x, mean, std), y[idx_test], num_classes=10,
                        in_channels=1, image_size=image_size, mean=mean, std=std)


def _missing(title: str, data_dir, expected: str) -> FileNotFoundError:
    where = "not found: no --data-dir given" if data_dir is None else f"not found under {data_dir}"
    return FileNotFoundError(
        f"{title} {where}: expected {expected}; pass --download (with --data-dir DIR) "
        f"to fetch it (needs internet), or copy the files there")


def _load_fashion_mnist(data_dir, download: bool, image_size) -> ImageDataset:
    raw = os.path.join("DIR" if data_dir is None else str(data_dir), "FashionMNIST", "raw")
    # Each file may be NAME or NAME.gz; what is there is checked before anything reads it.
    paths = [None] * len(_FMNIST_FILES) if data_dir is None else files.locate_fashion_mnist(raw)
    if download and data_dir is not None and None in paths:
        # lazy: torchvision is a heavy optional dependency, not loaded by `import dartsfast`
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(data_dir), train=True, download=True)  # fetches and extracts all four
        paths = files.locate_fashion_mnist(raw)
    if None in paths:
        raise _missing("Fashion-MNIST", data_dir,
                       f"{raw}/{{{','.join(_FMNIST_FILES)}}}[.gz]")
    arrays = files.read_fashion_mnist(paths)  # uint8 [N, 28, 28] and [N], checked
    # The whole uint8 array at once: one conversion, no per-image PIL decode.
    xs = [_normalise(_resize(torch.from_numpy(x).unsqueeze(1).float().div_(255), image_size),
                     FASHION_MNIST_MEAN, FASHION_MNIST_STD) for x in arrays[0::2]]
    ys = [torch.from_numpy(y).to(torch.int64) for y in arrays[1::2]]
    return ImageDataset("fashion-mnist", xs[0], ys[0], xs[1], ys[1], num_classes=10,
                        in_channels=1, image_size=xs[0].shape[-1],
                        mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)


def _load_cifar10(data_dir, download: bool, image_size) -> ImageDataset:
    base = os.path.join("DIR" if data_dir is None else str(data_dir), "cifar-10-batches-py")
    paths = [None] * len(_CIFAR_FILES) if data_dir is None else files.locate_cifar10(base)
    if download and data_dir is not None and not files.cifar10_intact(base):
        # lazy: heavy optional dependency (as above). The archive replaces every file, so a
        # damaged one is repaired too; its md5 is checked before extraction.
        from torchvision.datasets import CIFAR10
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(CIFAR10.url, str(data_dir), filename=CIFAR10.filename,
                                     md5=CIFAR10.tgz_md5)
        paths = files.locate_cifar10(base)
    if None in paths:
        raise _missing("CIFAR-10", data_dir, f"{base}/{{{','.join(_CIFAR_FILES)}}} "
                       "(the extracted cifar-10-python.tar.gz)")
    # Read by a restricted unpickler, checked for shape, labels and md5 (not torchvision's
    # CIFAR10, which unpickles anything). Rows are channel-major 3x32x32: a reshape to NCHW.
    arrays = files.read_cifar10(paths)
    xs = [_normalise(_resize(torch.from_numpy(x).view(-1, 3, 32, 32).float().div_(255),
                             image_size), CIFAR10_MEAN, CIFAR10_STD) for x in arrays[0::2]]
    ys = [torch.from_numpy(y) for y in arrays[1::2]]
    return ImageDataset("cifar10", xs[0].contiguous(), ys[0], xs[1].contiguous(), ys[1],
                        num_classes=10, in_channels=3, image_size=xs[0].shape[-1],
                        mean=CIFAR10_MEAN, std=CIFAR10_STD)


def make_synthetic(num_samples: int = 2048, *, num_classes: int = 10, in_channels: int = 3,
                   image_size: int = 16, seed: int = 0, test_fraction: float = 0.2,
                   noise: float = 1.0) -> ImageDataset:
    """Seeded synthetic classification set: ``x = prototype[y] + noise * N(0, 1)``.

    Each class prototype is a smooth random image (a 4x4 Gaussian field upsampled to
    ``image_size``), so the signal is learnable by a linear model and by convolutions
    alike; ``noise`` sets the difficulty. Same arguments -> identical tensors.
    """
    if num_samples < 2 * num_classes or num_classes < 2:
        raise ValueError(f"need num_classes >= 2 and num_samples >= 2*num_classes, got "
                         f"{num_samples} samples, {num_classes} classes")
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(num_classes, in_channels, 4, 4, generator=g)
    protos = F.interpolate(protos, size=(image_size, image_size), mode="bilinear",
                           align_corners=False)
    y = torch.arange(num_samples) % num_classes  # balanced classes ...
    y = y[torch.randperm(num_samples, generator=g)]  # ... in random order
    x = protos[y] + noise * torch.randn(num_samples, in_channels, image_size, image_size,
                                        generator=g)
    n_test = max(num_classes, int(round(num_samples * test_fraction)))
    train_x, test_x = x[n_test:].contiguous(), x[:n_test].contiguous()
    mean = tuple(train_x.mean((0, 2, 3)).tolist())
    std = tuple(train_x.std((0, 2, 3)).tolist())
    return ImageDataset("synthetic", _normalise(train_x, mean, std), y[n_test:],
                        _normalise(test_x, mean, std), y[:n_test], num_classes=num_classes,
                        in_channels=in_channels, image_size=image_size, mean=mean, std=std)


def split_train_val(dataset: ImageDataset, fraction: float = 0.5, seed: int = 0):
    """DARTS split of the *training* set: ``fraction`` for the weights, the rest for alphas.

    Returns ``(train_x, train_y, val_x, val_y)`` on the dataset's device, disjoint, and
    the same for the same ``seed`` (the permutation is drawn on the CPU so it does not
    depend on the device).
    """
    tr, va = split_indices(dataset.train_x.shape[0], fraction, seed)
    tr, va = tr.to(dataset.device), va.to(dataset.device)
    x, y = dataset.train_x, dataset.train_y
    return x.index_select(0, tr), y.index_select(0, tr), x.index_select(0, va), y.index_select(0, va)


def split_indices(n: int, fraction: float = 0.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The index halves of :func:`split_train_val` over ``n`` samples: int64 CPU tensors
    ``(weights half [int(n * fraction)], alphas half [the rest])`` from a CPU randperm."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n_train = int(n * fraction)
    if n_train == 0 or n_train == n:
        raise ValueError(f"fraction {fraction} of {n} samples leaves one side empty")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:n_train], perm[n_train:]
