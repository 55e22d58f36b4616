"""The search checkpoint: everything needed to continue a search bit for bit, written atomically.

One file, ``checkpoint.pt``, rewritten (temp file + rename) after every epoch, so the
file on disk is always a complete earlier checkpoint. Loaded with ``weights_only=True``:
it holds only tensors and plain containers, so loading never runs pickled code.

The zip that ``torch.save`` writes is not checked on reading: flipped bytes inside a
tensor's storage load as other numbers and a resumed search would go on from them. So
the file carries SHA-256 digests of its own content (``payload["digests"]``): one per
tensor, named by its path (``model/net.stem.0.weight``, ``w_opt/state/0/momentum_buffer``),
and one of everything else (config, history, epoch, optimiser settings) in a canonical
encoding. :func:`load_checkpoint` recomputes them and refuses a file that differs, and
:func:`save_checkpoint` reads the new file back and checks it the same way before it
replaces the last good one.
"""
from __future__ import annotations

import collections
import errno
import hashlib
import io
import os
import pickle
import re
import zipfile

import torch

from dartsfast._io import atomic_write, torch_bytes
from dartsfast.search.config import SearchConfig

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "dartsfast.search.checkpoint"
# 2: batched supernet states (issue 14) and no BatchNorm batch counters in the model.
# 3: content digests (issue 15).
FORMAT_VERSION = 3
KEEP = "the file was left as it is; move it away (or pick another --out) to start afresh"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, not ours, or from another configuration."""


# ---------------------------------------------------------------------------- digests
def _tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of dtype, shape and the values' bytes in C order (strides and device left out:
    torch.save may keep a view's whole storage, and the file is loaded onto the CPU)."""
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    # reshape(-1): a 0-d tensor cannot be viewed as bytes; uint8 view: numpy has no bfloat16.
    h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def _digests(payload: dict) -> dict:
    """``{"tensors": {path: hex}, "meta": hex}`` of all of ``payload`` but its ``"digests"``.

    The metadata encoding is typed and length-prefixed, so different contents cannot
    encode alike, and depends only on what survives torch.save/load: pickle keeps dict
    order, list vs tuple, int keys and the attributes of an OrderedDict (a state_dict's
    ``_metadata``). Floats go in as ``float.hex`` (exact, NaN included).
    """
    tensors: dict = {}
    meta = hashlib.sha256()

    def walk(obj, path: str) -> None:
        kind = type(obj)
        if isinstance(obj, torch.Tensor):
            if path in tensors:
                raise ValueError(f"two tensors at {path}")
            tensors[path] = _tensor_digest(obj)
            meta.update(b"tensor;")  # where it is; what it holds is in its own digest
        elif obj is None or kind is bool:
            meta.update({None: b"N", True: b"T", False: b"F"}[obj])
        elif kind is int:
            meta.update(b"i%d;" % obj)
        elif kind is float:
            meta.update(b"f" + obj.hex().encode() + b";")
        elif kind is str or kind is bytes:
            data = obj.encode("utf-8", "surrogatepass") if kind is str else obj
            meta.update(b"%s%d:" % (kind.__name__.encode(), len(data)) + data)
        elif kind in (torch.dtype, torch.device):
            meta.update(kind.__name__.encode())
            walk(str(obj), path)
        elif kind in (list, tuple, torch.Size):
            meta.update(b"%s%d[" % (kind.__name__.encode(), len(obj)))
            for i, item in enumerate(obj):
                walk(item, f"{path}/{i}" if path else str(i))
        elif kind in (dict, collections.OrderedDict):
            meta.update(b"%s%d{" % (kind.__name__.encode(), len(obj)))
            for key, value in obj.items():
                walk(key, path)
                walk(value, f"{path}/{key}" if path else str(key))
            if kind is collections.OrderedDict:
                walk(dict(vars(obj)), path + "@")  # a state_dict's module versions
        else:  # weights_only=True would refuse it too: fail at the save, not at the resume
            raise TypeError(f"a checkpoint cannot hold a {kind.__name__} (at {path or 'the top'})")

    walk({k: v for k, v in payload.items() if k != "digests"}, "")
    return {"tensors": tensors, "meta": meta.hexdigest()}


def _check_digests(payload: dict, name: str, keep: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensor (or the metadata) that
    does not match the digests stored in ``payload``."""
    stored = payload.get("digests")
    if not (isinstance(stored, dict) and isinstance(stored.get("tensors"), dict)
            and isinstance(stored.get("meta"), str)):
        raise CheckpointError(f"checkpoint {name} has no content digests, so it cannot be "
                              f"checked for corruption; {keep}")
    try:
        actual = _digests(payload)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {name} is corrupt: {e}; {keep}") from e
    paths = list(actual["tensors"]) + [p for p in stored["tensors"] if p not in actual["tensors"]]
    for path in paths:
        if actual["tensors"].get(path) != stored["tensors"].get(path):
            raise CheckpointError(f"checkpoint {name} is corrupt: tensor {path} does not match "
                                  f"the digest written with it; {keep}")
    if actual["meta"] != stored["meta"]:
        raise CheckpointError(f"checkpoint {name} is corrupt: its metadata (config, history, epoch, "
                              f"optimiser settings) does not match the digest written with it; {keep}")


# ---------------------------------------------------------------------------- reading
def _reason(e: BaseException) -> str:
    """torch's error, first useful line, without its advice to load the file unsafely (the
    weights-only refusal says how to load it anyway: wrong for a file that may be hostile)."""
    lines = [line.strip() for line in str(e).splitlines()]
    useful = [line for line in lines
              if line and not re.search(r"weights|trusted source|arbitrary code", line, re.IGNORECASE)]
    reason = f"{type(e).__name__}: {useful[0].rstrip('.') if useful else 'unreadable'}"
    if "weights only" in str(e).lower():
        reason += "; loading it any other way could run code from the file"
    return reason


def _read(source, name: str, keep: str) -> dict:
    """The payload in ``source`` (a path or a file object), format and digests checked."""
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        raise CheckpointError(f"checkpoint {name} is corrupt or unreadable ({_reason(e)}): it is not a "
                              f"checkpoint this dartsfast wrote, or it was damaged since; {keep}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a dartsfast search checkpoint; {keep}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {name} has format version {payload.get('format_version')}, "
                              f"this dartsfast reads {FORMAT_VERSION}; {keep}")
    _check_digests(payload, name, keep)
    return payload


def load_checkpoint(path: str, config: SearchConfig) -> dict:
    """The checkpoint at ``path`` if it is intact and made with an equivalent ``config``.

    Raises :class:`CheckpointError` saying what is wrong; the file is left untouched.
    """
    payload = _read(path, path, KEEP)
    try:
        saved = SearchConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an unusable config ({e}); {KEEP}") from e
    diffs = config.differences(saved)
    if diffs:
        raise CheckpointError(f"checkpoint {path} was made with other settings "
                              f"(checkpoint != this run): {'; '.join(diffs)}; {KEEP}")
    return payload


# ---------------------------------------------------------------------------- writing
def save_checkpoint(path: str, state: dict) -> None:
    """Write ``state`` to ``path``, replacing the file there only once the new one reads back intact.

    Serialised in memory first: torch's zip writer turns a full disk into
    ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, a plain file
    write raises ``OSError(ENOSPC)``. The temp file is then read back (from the disk, not
    the page cache, where the OS allows) and must equal those bytes and pass the same
    checks as :func:`load_checkpoint`; otherwise it is removed and the last good
    checkpoint stays. Costs one extra copy of the checkpoint in memory.
    """
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    payload["digests"] = _digests(payload)
    data = torch_bytes(payload)
    keep = "the previous checkpoint was kept"

    def verify(tmp: str) -> None:
        with open(tmp, "rb") as f:
            if hasattr(os, "posix_fadvise"):  # drop the cached pages: read what the disk holds
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            written = f.read()
        if written != data:
            raise OSError(errno.EIO, f"checkpoint {path}: the file written reads back different "
                                     f"from what was written; {keep}")
        _read(io.BytesIO(written), f"{path} (just written)", keep)

    atomic_write(path, lambda f: f.write(data), verify=verify)


def checkpoint_path(out: str) -> str:
    return os.path.join(out, CHECKPOINT_FILE)
