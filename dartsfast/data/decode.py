"""Decoding a scanned image folder: one image to uint8 [C, S, S], the folder's statistics,
the whole folder at once (the device-resident path), and the per-image ``Dataset`` the
streamed path's ``DataLoader`` workers read.

Every image goes through the same :func:`decode_image` in both paths (PIL: convert to
the folder's mode, shorter side resized to S with Pillow's antialiased bilinear filter,
centre crop), and is normalised by the same float32 ops from uint8, so both paths see the
same bits.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

DEFAULT_MAX_SIDE = 32  # default image_size: min(32, the median shorter side); 32 = CIFAR's search shape
STATS_SAMPLES = 2000  # images whose pixels give the per-channel mean / std (seeded sample)
_STATS_SEED = 0


class ImageDecodeError(ValueError):
    """An image whose header was readable but whose pixels are not (truncated, damaged)."""


def default_image_size(median_side: int) -> int:
    """min(DEFAULT_MAX_SIDE, the median shorter side): small images are not upscaled, and a
    folder of 500 px photos does not make every supernet activation 240x larger than CIFAR's."""
    return max(1, min(DEFAULT_MAX_SIDE, median_side))


def decode_image(path: str, mode: str, size: int) -> torch.Tensor:
    """uint8 [C, size, size] (C = 1 for mode 'L', 3 for 'RGB'); ImageDecodeError naming the file."""
    from PIL import Image  # lazy: only image folders need Pillow

    try:
        with Image.open(path) as im:
            im = im.convert(mode)  # decodes; a truncated file raises here
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"cannot decode image {path}: {e}") from None
    w, h = im.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.BILINEAR)  # Pillow antialiases when shrinking
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    a = np.array(im, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a))


def to_float(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> normalised float32: (x / 255 - mean[c]) / std[c]. ``mean`` /
    ``std`` float32 [1, C, 1, 1] on x's device. The one conversion both paths use."""
    return x.float().div_(255).sub_(mean).div_(std)


def stats_tensors(mean: Sequence[float], std: Sequence[float], device) -> tuple[torch.Tensor, torch.Tensor]:
    as_t = lambda v: torch.tensor(v, dtype=torch.float32, device=device).view(1, -1, 1, 1)  # noqa: E731
    return as_t(mean), as_t(std)


class FolderImages(torch.utils.data.Dataset):
    """(path, label) samples decoded on access: ``ds[i]`` -> (uint8 [C, S, S], label, failed).

    An image that fails to decode (truncated, damaged) is replaced by the next one that
    decodes (i+1, i+2, ... wrapping), so a streamed batch keeps its size and the same
    seed gives the same batch; ``failed`` is then i, else -1, for the caller to count.
    Picklable: DataLoader workers get a copy.
    """

    def __init__(self, samples: Sequence[tuple], mode: str, size: int):
        self.samples, self.mode, self.size = list(samples), mode, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        for k in range(len(self.samples)):
            path, label = self.samples[(i + k) % len(self.samples)]
            try:
                return decode_image(path, self.mode, self.size), label, (i if k else -1)
            except ImageDecodeError:
                continue
        raise ImageDecodeError(f"none of the {len(self.samples)} images decodes (first: {self.samples[0][0]})")


def decode_all(images: FolderImages) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Every image: uint8 [N', C, S, S], int64 labels [N'] and the paths that failed to
    decode (dropped; N' = N - failures). The resident path's one pass over the files."""
    xs, ys, failed = [], [], []
    for path, label in images.samples:
        try:
            xs.append(decode_image(path, images.mode, images.size))
            ys.append(label)
        except ImageDecodeError:
            failed.append(path)
    c = 1 if images.mode == "L" else 3
    x = torch.stack(xs) if xs else torch.empty(0, c, images.size, images.size, dtype=torch.uint8)
    return x, torch.tensor(ys, dtype=torch.int64), failed


def channel_stats(images: FolderImages) -> tuple[tuple, tuple, list]:
    """Per-channel mean and std of pixels in [0, 1] over a seeded sample of at most
    STATS_SAMPLES training images (the same sample in both paths), and the sample's
    undecodable paths. Accumulated in float64 so 2000 x 1024 pixels lose nothing."""
    n = len(images)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_STATS_SEED))[:STATS_SAMPLES]
    total = total_sq = None
    count, failed = 0, []
    for i in sorted(order.tolist()):
        path, _ = images.samples[i]
        try:
            x = decode_image(path, images.mode, images.size).to(torch.float64).div_(255)
        except ImageDecodeError:
            failed.append(path)
            continue
        s, sq = x.sum((1, 2)), x.square().sum((1, 2))
        total, total_sq = (s, sq) if total is None else (total + s, total_sq + sq)
        count += x.shape[1] * x.shape[2]
    if total is None:
        raise ImageDecodeError(f"none of the {len(order)} sampled training images decodes "
                               f"(first: {images.samples[0][0]})")
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)
    # A constant channel (all-black scans) would divide by 0: std 1 leaves it centred only.
    std = [v ** 0.5 if v > 1e-12 else 1.0 for v in var.tolist()]
    return tuple(mean.tolist()), tuple(std), failed
