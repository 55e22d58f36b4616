"""The dataset files under ``--data-dir``, read and checked before anything trusts them (issue 15).

A damaged file (empty, truncated, garbage bytes, the wrong shapes or labels, a directory
where a file belongs) raises ``ValueError`` naming the file and what is wrong with it, and
saying how to replace it, instead of a raw error from torchvision or pickle. Absent files
are not judged here: ``locate`` returns None and the caller raises ``FileNotFoundError``.

Fashion-MNIST: four idx files (big-endian header: magic 2051 = unsigned-byte 3-d images,
2049 = unsigned-byte 1-d labels, then one 32-bit size per dimension, then the bytes),
read uncompressed or as ``NAME.gz``. CIFAR-10: the python pickles of
``cifar-10-python.tar.gz``, read by an unpickler that refuses anything but plain containers
and numpy arrays (a pickle can run code), checked for shape and labels, then by md5.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle
import struct
import zlib
from typing import Optional

import numpy as np

FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_SOURCE = "https://github.com/zalandoresearch/fashion-mnist"
CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
CIFAR10_SOURCE = "https://www.cs.toronto.edu/~kriz/cifar.html (cifar-10-python.tar.gz)"
# The md5 of each original file (torchvision's CIFAR10.train_list / test_list / meta).
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
NUM_CLASSES = 10
_IDX_MAGIC = {3: 2051, 1: 2049}  # 0x0803 / 0x0801: unsigned bytes, 3 / 1 dimensions
_IMAGE_SIDE = 28
_CIFAR_ROW = 3 * 32 * 32


def _bad(title: str, path: str, what: str, source: str, files: bool = False) -> ValueError:
    noun, it, original = ("files", "them", "originals") if files else ("file", "it", "original")
    return ValueError(f"{title} {noun} {path} {what}; replace {it} with the {original} from {source}, "
                      f"or delete {it} and pass --download")


def locate(path: str, title: str, source: str, gz: bool = False) -> Optional[str]:
    """``path`` (or, with ``gz``, ``path + '.gz'`` when ``path`` is absent) if it exists, None if
    neither does; ``ValueError`` when what is there is not a regular file (a directory, say)."""
    for p in (path, path + ".gz") if gz else (path,):
        if os.path.exists(p):
            if not os.path.isfile(p):
                raise _bad(title, p, "is a directory, not a file" if os.path.isdir(p) else "is not a regular file",
                           source)
            return p
    return None


def _read(path: str, title: str, source: str) -> bytes:
    """The bytes of ``path``, gunzipped when it ends in ``.gz``."""
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise _bad(title, path, "is empty (0 bytes)", source)
    if path.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except EOFError as e:
            raise _bad(title, path, f"is a truncated gzip file ({e})", source) from None
        except (gzip.BadGzipFile, zlib.error) as e:
            raise _bad(title, path, f"is not a valid gzip file ({e})", source) from None
        if not data:
            raise _bad(title, path, "is empty (0 bytes once decompressed)", source)
    return data


# ----------------------------------------------------------------------------- Fashion-MNIST

def _read_idx(path: str, ndim: int) -> np.ndarray:
    """An unsigned-byte idx file of ``ndim`` dimensions (images 28x28), as a uint8 array."""
    title, source = "Fashion-MNIST", FASHION_MNIST_SOURCE
    data = _read(path, title, source)
    bad = lambda what: _bad(title, path, f"is not a valid idx file ({what})", source)  # noqa: E731
    header = 4 * (ndim + 1)
    if len(data) < 4:
        raise bad(f"truncated: expected at least {header} bytes of header, found {len(data)}")
    magic, want = int.from_bytes(data[:4], "big"), _IDX_MAGIC[ndim]
    if data[:2] == b"\x1f\x8b" and not path.endswith(".gz"):
        raise bad(f"it is gzip-compressed: decompress it, or rename it to {os.path.basename(path)}.gz")
    if magic != want:
        kind = "3-d unsigned-byte images" if ndim == 3 else "1-d unsigned-byte labels"
        raise bad(f"bad magic number {magic} (0x{magic:08x}); expected {want} (0x{want:08x}), {kind}")
    if len(data) < header:
        raise bad(f"truncated: expected at least {header} bytes of header, found {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and dims[1:] != (_IMAGE_SIDE, _IMAGE_SIDE):
        raise bad(f"wrong shape: images of {dims[1]}x{dims[2]} pixels, expected {_IMAGE_SIDE}x{_IMAGE_SIDE}")
    size = header + math.prod(dims)
    if len(data) != size:
        what = "truncated" if len(data) < size else "too long"
        raise bad(f"{what}: expected {size} bytes for {dims[0]} {'images' if ndim == 3 else 'labels'}, "
                  f"found {len(data)}")
    array = np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()
    if ndim == 1 and array.size and array.max() >= NUM_CLASSES:
        i = int(np.argmax(array >= NUM_CLASSES))
        raise _bad(title, path, f"has label {array[i]} at index {i} (Fashion-MNIST labels are 0-"
                                f"{NUM_CLASSES - 1})", source)
    return array


def locate_fashion_mnist(raw: str) -> list:
    """The path of each of ``FASHION_MNIST_FILES`` under ``raw`` (``NAME`` or ``NAME.gz``), None
    where absent."""
    return [locate(os.path.join(raw, f), "Fashion-MNIST", FASHION_MNIST_SOURCE, gz=True)
            for f in FASHION_MNIST_FILES]


def read_fashion_mnist(paths) -> tuple:
    """``(train_x, train_y, test_x, test_y)``: uint8 [N, 28, 28] and [N] from the four files
    ``paths`` (in ``FASHION_MNIST_FILES`` order), each checked."""
    out = []
    for images_path, labels_path in (paths[:2], paths[2:]):
        images, labels = _read_idx(images_path, 3), _read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise _bad("Fashion-MNIST", f"{images_path} and {labels_path}",
                       f"do not match: {len(images)} images but {len(labels)} labels",
                       FASHION_MNIST_SOURCE, files=True)
        out += [images, labels]
    return tuple(out)


# ----------------------------------------------------------------------------- CIFAR-10

class _Refused(pickle.UnpicklingError):
    """A pickle that names a global no CIFAR-10 file holds."""


class _PlainUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays only: what the CIFAR-10 pickles
    hold. Any other global (a class, a function such as os.system) is refused, not imported."""

    ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in ("_reconstruct", "scalar")}
    ALLOWED |= {("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise _Refused(f"it refers to {module}.{name}, which no CIFAR-10 file holds; refused without loading it")


def _describe(obj) -> str:
    if isinstance(obj, np.ndarray):
        return f"a {obj.dtype} array of shape {obj.shape}"
    if isinstance(obj, dict):
        keys = sorted(map(repr, obj))
        return f"a dict with keys {', '.join(keys[:8])}{', ...' if len(keys) > 8 else ''}" if keys else "an empty dict"
    return f"a {type(obj).__name__}"


def _check_batch(obj) -> Optional[str]:
    """What is wrong with an unpickled CIFAR-10 batch, or None."""
    if not (isinstance(obj, dict) and "data" in obj and "labels" in obj):
        return f"is not a CIFAR-10 batch: expected a dict with 'data' and 'labels', found {_describe(obj)}"
    data, labels = obj["data"], obj["labels"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _CIFAR_ROW):
        return f"has the wrong 'data': expected a uint8 array of shape (N, {_CIFAR_ROW}), found {_describe(data)}"
    try:
        y = np.asarray(labels) if isinstance(labels, (list, tuple, np.ndarray)) else None
    except ValueError:  # ragged nested lists
        y = None
    if y is None or y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        found = _describe(labels)
        if isinstance(labels, (list, tuple)):
            odd = next((v for v in labels if isinstance(v, bool) or not isinstance(v, (int, np.integer))), None)
            found += f" holding {type(odd).__name__} values such as {odd!r:.20}" if odd is not None else ""
        return f"has the wrong 'labels': expected a list of integers, found {found}"
    if len(y) != len(data):
        return f"has mismatched lengths: {len(data)} images but {len(y)} labels"
    out = (y < 0) | (y >= NUM_CLASSES)
    if out.any():
        i = int(np.argmax(out))
        return f"has label {y[i]} at index {i} (CIFAR-10 labels are 0-{NUM_CLASSES - 1})"
    return None


def _read_cifar_file(path: str):
    title, source = "CIFAR-10", CIFAR10_SOURCE
    data = _read(path, title, source)
    try:
        obj = _PlainUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as e:
        raise _bad(title, path, f"is not a valid CIFAR-10 pickle ({e})", source) from None
    except Exception as e:  # noqa: BLE001 -- garbage bytes can make the unpickler raise almost anything
        raise _bad(title, path, f"is not a valid CIFAR-10 pickle ({type(e).__name__}: {e})", source) from None
    name = os.path.basename(path)
    if name == "batches.meta":
        problem = None if isinstance(obj, dict) and "label_names" in obj else (
            f"is not CIFAR-10 metadata: expected a dict with 'label_names', found {_describe(obj)}")
    else:
        problem = _check_batch(obj)
    if problem is None and name in CIFAR10_MD5 and (md5 := hashlib.md5(data).hexdigest()) != CIFAR10_MD5[name]:
        problem = f"differs from the original CIFAR-10 file (md5 {md5}, expected {CIFAR10_MD5[name]})"
    if problem is not None:
        raise _bad(title, path, problem, source)
    return obj


def locate_cifar10(base: str) -> list:
    """The path of each of ``CIFAR10_FILES`` under ``base``, None where absent."""
    return [locate(os.path.join(base, f), "CIFAR-10", CIFAR10_SOURCE) for f in CIFAR10_FILES]


def cifar10_intact(base: str) -> bool:
    """Whether every CIFAR-10 file is under ``base`` with its original md5 (to decide a download)."""
    for f in CIFAR10_FILES:
        path = os.path.join(base, f)
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as fh:
            if hashlib.md5(fh.read()).hexdigest() != CIFAR10_MD5.get(f):
                return False
    return True


def read_cifar10(paths) -> tuple:
    """``(train_x, train_y, test_x, test_y)`` from the files ``paths`` (in ``CIFAR10_FILES``
    order), each checked: uint8 [N, 3072] rows (channel-major 3x32x32) and int64 [N] labels."""
    batches = [_read_cifar_file(p) for p in paths]
    out = []
    for group in (batches[:5], batches[5:6]):  # batches[6] is batches.meta, checked but unused
        out.append(np.concatenate([b["data"] for b in group]))
        out.append(np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in group]))
    return tuple(out)
