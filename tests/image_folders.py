"""Image folders for the tests of ``--dataset imagefolder`` (imported as ``image_folders``).

Each class is a prototype colour plus seeded noise, so a network can learn it; sizes vary
between 12 and 16 px and the files alternate between PNG and JPEG, as a user's folder would.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, rng: np.random.Generator, proto: np.ndarray, mode: str = "RGB") -> None:
    h, w = (int(v) for v in rng.integers(12, 17, size=2))
    pixels = np.clip(proto[None, None, :] + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "L":
        image = image.convert("L")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG" if path.suffix == ".png" else "JPEG", quality=95)


def make_image_folder(root: Path, *, classes: int = 3, per_class: int = 40, test_per_class: int = 0,
                      seed: int = 0, mode: str = "RGB", held: str = "test") -> Path:
    """``root/train/class_k/img_i.{png,jpg}`` (+ ``root/<held>/...`` when test_per_class > 0)."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(30, 226, size=(classes, 3)).astype(np.float64)
    for split, count in (("train", per_class), (held, test_per_class)):
        for c in range(classes):
            for i in range(count):
                ext = ".png" if i % 2 == 0 else ".jpg"
                write_image(root / split / f"class_{c}" / f"img_{i:03d}{ext}", rng, protos[c], mode)
    return root
