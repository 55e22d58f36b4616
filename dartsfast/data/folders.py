"""Scanning and checking a user's image folder (``--dataset imagefolder --data-dir D``).

Layout (torchvision's ``ImageFolder`` convention): ``D/train/<class>/**/<image>`` and,
held out, ``D/test/<class>/...`` or else ``D/val/<class>/...`` with the same class names
(a class missing there is fine, an extra one is an error). With neither, a fixed
stratified 10% of ``train/`` (seed 0, the same for every run, so a search and the
training of its genotype hold out the same images) is the test set.

The scan reads every image's header (``PIL.Image.open`` is lazy, no decode: 68 us a
file measured over 180 small PNG/JPEG files, warm cache, busy 2-core VM; ~1 min for 1M
files) to learn its mode and size; a file whose header cannot be read is corrupt,
skipped and named in the report. Junk is ignored and counted, never an error: hidden
files and folders (``.DS_Store``, macOS ``._x.jpg``), non-image files (``.txt``, ``.csv``),
empty sub-folders, stray files directly under ``train/``. Whatever makes the folder
unusable is a ValueError naming the path and what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import torch

from dartsfast.config import IMAGE_MODES

HELD_OUT_FRACTION = 0.1  # of each class, when the folder has no test/ or val/
_SPLIT_SEED = 0  # fixed: every run (any --seed) holds out and orders the same images
# PIL modes without colour; everything else (RGB, RGBA, P(alette), CMYK, YCbCr, ...) is
# colour. A palette image may hold only greys, but telling needs its palette: colour.
_GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
_NAMED = 3  # corrupt files named in the one-line report


@dataclass
class FolderScan:
    """What :func:`scan_image_folder` found. ``train`` / ``test``: (path, label) lists, the
    training list in a fixed shuffled order (so ``max_train_samples`` takes a mix of
    classes). ``mode``: the PIL mode images are converted to ('L' or 'RGB');
    ``median_side``: median shorter side over the readable headers."""

    root: str
    classes: tuple
    train: list
    test: list
    test_source: str
    mode: str
    median_side: int
    corrupt: list = field(default_factory=list)  # paths whose header could not be read
    ignored: int = 0  # junk entries (hidden, non-image, empty folders, stray files)

    @property
    def in_channels(self) -> int:
        return 1 if self.mode == "L" else 3

    def report(self) -> str:
        """One line: counts, where the test set comes from, what was skipped or ignored."""
        line = (f"imagefolder {self.root}: {len(self.classes)} classes, {len(self.train)} training and "
                f"{len(self.test)} test images ({self.test_source}), mode {self.mode}")
        if self.corrupt:
            named = ", ".join(self.corrupt[:_NAMED]) + (", ..." if len(self.corrupt) > _NAMED else "")
            line += f"; {len(self.corrupt)} unreadable image(s) skipped ({named})"
        if self.ignored:
            line += f"; {self.ignored} non-image or hidden entries ignored"
        return line


def scan_image_folder(data_dir, image_mode: str = "auto") -> FolderScan:
    """Scan and check ``data_dir`` (see the module docstring); ValueError naming what is wrong."""
    from torchvision.datasets.folder import IMG_EXTENSIONS  # lazy: heavy optional dependency

    if image_mode not in IMAGE_MODES:
        raise ValueError(f"image_mode must be one of {', '.join(IMAGE_MODES)}, got {image_mode!r}")
    if data_dir is None:
        raise ValueError("--dataset imagefolder needs --data-dir D (a folder holding train/<class>/ image folders)")
    root = os.fspath(data_dir)
    if not os.path.exists(root):
        raise ValueError(f"image folder {root} does not exist; pass --data-dir D with D/train/<class>/<images>")
    if not os.path.isdir(root):
        raise ValueError(f"image folder {root} is not a directory; pass --data-dir D with D/train/<class>/<images>")
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise ValueError(f"{root} has no train/ folder; put the training images in {train_dir}/<class>/")
    walker = _Walker(tuple(IMG_EXTENSIONS))
    classes = walker.class_folders(train_dir)
    if not classes:
        raise ValueError(f"{train_dir} holds no class folders; put each class's images in {train_dir}/<class>/")
    if len(classes) == 1:
        raise ValueError(f"{train_dir} holds a single class folder ({classes[0]}); classification needs "
                         "two or more, one folder each")
    train = walker.images(train_dir, classes)
    if not any(train.values()):
        raise ValueError(f"{train_dir} holds no images at all in its {len(classes)} class folders "
                         f"(extensions read: {' '.join(IMG_EXTENSIONS)})")
    for name in classes:
        if not train[name]:
            raise ValueError(f"class folder {os.path.join(train_dir, name)} holds no images; add some or remove it")
    test, source = None, None
    for held in ("test", "val"):
        held_dir = os.path.join(root, held)
        if os.path.isdir(held_dir):
            test, source = _held_out_folder(walker, held_dir, classes, IMG_EXTENSIONS), f"{held}/"
            break
    headers = {path: walker.header(path) for paths in [*train.values(), *(test or {}).values()] for path in paths}
    corrupt = sorted(p for p, h in headers.items() if h is None)
    train = {c: [p for p in paths if headers[p] is not None] for c, paths in train.items()}
    for name in classes:
        if not train[name]:
            raise ValueError(f"class folder {os.path.join(train_dir, name)} holds no readable images "
                             f"(all {len(corrupt)} unreadable ones are listed in the report)")
    label = {c: i for i, c in enumerate(classes)}
    if test is None:
        train, test = _hold_out(train)
        source = f"held out: {HELD_OUT_FRACTION:.0%} of train/, no test/ or val/ folder"
    else:
        test = {c: [p for p in paths if headers[p] is not None] for c, paths in test.items()}
    mode = _pick_mode(image_mode, {p: h for p, h in headers.items() if h is not None})
    sides = sorted(min(h[1]) for h in headers.values() if h is not None)
    order = torch.randperm(sum(map(len, train.values())), generator=torch.Generator().manual_seed(_SPLIT_SEED))
    flat = [(p, label[c]) for c in classes for p in train[c]]
    return FolderScan(root=root, classes=tuple(classes), train=[flat[i] for i in order.tolist()],
                      test=[(p, label[c]) for c in classes for p in test.get(c, [])], test_source=source,
                      mode=mode, median_side=sides[len(sides) // 2], corrupt=corrupt, ignored=walker.ignored)


class _Walker:
    """Lists class folders and images, counting the junk it passes over."""

    def __init__(self, extensions: tuple):
        self.extensions, self.ignored = extensions, 0

    def class_folders(self, folder: str) -> list:
        names = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith("."):
                names.append(entry.name)
            else:
                self.ignored += 1  # a stray file or hidden folder next to the classes
        return names

    def images(self, folder: str, classes: list) -> dict:
        """{class: sorted image paths under folder/class, at any depth}."""
        found = {}
        for name in classes:
            paths = []
            for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name), followlinks=True):
                hidden = [d for d in dirnames if d.startswith(".")]
                self.ignored += len(hidden) + (not dirnames and not filenames)  # empty sub-folder
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if not f.startswith(".") and f.lower().endswith(self.extensions):
                        paths.append(os.path.join(dirpath, f))
                    else:
                        self.ignored += 1
            found[name] = sorted(paths)
        return found

    @staticmethod
    def header(path: str) -> Optional[tuple]:
        """(PIL mode, (width, height)) from the header alone, or None if it cannot be read."""
        from PIL import Image  # lazy: only image folders need Pillow

        try:
            with Image.open(path) as im:
                return im.mode, im.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None


def _held_out_folder(walker: _Walker, held_dir: str, classes: list, extensions) -> dict:
    held_classes = walker.class_folders(held_dir)
    extra = sorted(set(held_classes) - set(classes))
    if extra:
        raise ValueError(f"{held_dir} has class folder(s) {', '.join(extra)} that train/ lacks; "
                         f"train/ has {', '.join(classes)}")
    test = walker.images(held_dir, held_classes)
    if not any(test.values()):
        raise ValueError(f"{held_dir} holds no images (extensions read: {' '.join(extensions)}); "
                         "fill it, or remove it to hold out 10% of train/")
    return test


def _hold_out(train: dict) -> tuple[dict, dict]:
    """Stratified: round(10%) of each class with at least 2 images (at least one of those)."""
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    kept, held = {}, {}
    for name, paths in train.items():
        n_held = max(1, round(len(paths) * HELD_OUT_FRACTION)) if len(paths) >= 2 else 0
        order = torch.randperm(len(paths), generator=g).tolist()
        held[name] = sorted(paths[i] for i in order[:n_held])
        kept[name] = sorted(paths[i] for i in order[n_held:])
    return kept, held


def _pick_mode(image_mode: str, headers: dict) -> str:
    if image_mode != "auto":
        return "RGB" if image_mode == "rgb" else "L"
    gray = sorted(p for p, (mode, _) in headers.items() if mode in _GRAY_MODES)
    colour = sorted(p for p, (mode, _) in headers.items() if mode not in _GRAY_MODES)
    if gray and colour:
        few, kind, other = ((gray, "grayscale", "colour") if len(gray) <= len(colour)
                            else (colour, "colour", "grayscale"))
        raise ValueError(f"the image folder mixes modes: {len(few)} {kind} image(s) such as {few[0]} among "
                         f"{len(gray) + len(colour) - len(few)} {other} ones; pass --image-mode rgb "
                         "(or gray) to convert every image")
    return "L" if gray else "RGB"
