"""Batched on-device augmentation: random crop + flip and cutout, seeded by a ``torch.Generator``.

Each is tensor arithmetic over the whole batch (one gather, one mask), never a per-image
host loop, so it runs on the device the batch is on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from dartsfast.config import DATASETS


def random_crop_flip(x: torch.Tensor, padding: int = 4, flip: bool = True, *,
                     flip_prob: float = 0.5,
                     generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Per-sample random crop of the zero-padded batch, then per-sample horizontal flip.

    ``x`` [N, C, H, W] (any device; ``generator`` on the same device). Zero padding in
    normalised space is the mean colour. Offsets are drawn as ``randint(0, 2p+1, (N,))``
    for rows then columns, then the flip mask ``rand(N) < flip_prob``; the crop and flip
    are one gather with computed indices — no per-sample host loop.
    Returns a new [N, C, H, W] tensor of the same dtype and device.
    """
    n, c, h, w = x.shape
    dev = x.device
    if padding > 0:
        xp = F.pad(x, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=generator)
    else:
        xp, dy = x, torch.zeros(n, dtype=torch.long, device=dev)
        dx = dy
    rows = dy[:, None] + torch.arange(h, device=dev)  # [N, H] source rows
    cols = torch.arange(w, device=dev).expand(n, w)
    if flip:
        flipped = torch.rand(n, device=dev, generator=generator) < flip_prob
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    cols = dx[:, None] + cols  # [N, W] source columns
    # Advanced indexing broadcasts [N,1,1,1] x [1,C,1,1] x [N,1,H,1] x [N,1,1,W] -> [N,C,H,W].
    ni = torch.arange(n, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return xp[ni, ci, rows[:, None, :, None], cols[:, None, None, :]]


def cutout(x: torch.Tensor, size: int, *,
           generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square per sample (all channels), centre uniform in the image.

    ``x`` [N, C, H, W]. As in DARTS, the square is clipped at the border, so it covers
    exactly size*size pixels only when it lies fully inside. Returns a new tensor.
    """
    n, _, h, w = x.shape
    if size <= 0:
        return x.clone()
    dev = x.device
    cy = torch.randint(0, h, (n, 1), device=dev, generator=generator)
    cx = torch.randint(0, w, (n, 1), device=dev, generator=generator)
    ar_h, ar_w = torch.arange(h, device=dev), torch.arange(w, device=dev)
    in_rows = (ar_h >= cy - size // 2) & (ar_h < cy - size // 2 + size)  # [N, H]
    in_cols = (ar_w >= cx - size // 2) & (ar_w < cx - size // 2 + size)  # [N, W]
    mask = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # [N, 1, H, W]
    return x.masked_fill(mask, 0.0)


@dataclass(frozen=True)
class Augment:
    """Batch augmentation ``aug(x, generator=g)``: random crop (+flip), then cutout.

    A frozen dataclass (not a lambda) so it has a readable repr for logs and configs.
    """

    padding: int = 0
    flip: bool = False
    cutout_size: int = 0

    def __call__(self, x: torch.Tensor, generator: Optional[torch.Generator] = None):
        if self.padding > 0 or self.flip:
            x = random_crop_flip(x, self.padding, self.flip, generator=generator)
        if self.cutout_size > 0:
            x = cutout(x, self.cutout_size, generator=generator)
        return x


def default_augment(name: str, image_size: int, cutout_size: int = 0) -> Optional[Augment]:
    """Per-dataset defaults: crop (pad image_size/8) everywhere but synthetic; flip only for
    cifar10 and image folders (natural photos; digits are not mirror-invariant: a flipped 2
    is no digit); optional cutout."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if name == "synthetic":  # prototypes are position-dependent: leave them alone
        return Augment(cutout_size=cutout_size) if cutout_size > 0 else None
    return Augment(padding=max(1, image_size // 8), flip=name in ("cifar10", "imagefolder"),
                   cutout_size=cutout_size)
