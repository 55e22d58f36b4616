"""The search checkpoint: everything needed to continue a search bit for bit, written atomically.

One file, ``checkpoint.pt``, rewritten (temp file + rename) after every epoch, so the
file on disk is always a complete earlier checkpoint. Loaded with ``weights_only=True``:
it holds only tensors and plain containers, so loading never runs pickled code.
"""
from __future__ import annotations

import os
import pickle
import zipfile

import torch

from dartsfast._io import atomic_write
from dartsfast.search.config import SearchConfig

CHECKPOINT_FILE = "checkpoint.pt"
FORMAT = "dartsfast.search.checkpoint"
# 2: batched supernet states (issue 14) and no BatchNorm batch counters in the model.
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, not ours, or from another configuration."""


def save_checkpoint(path: str, state: dict) -> None:
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **state}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str, config: SearchConfig) -> dict:
    """The checkpoint at ``path`` if it is intact and made with an equivalent ``config``.

    Raises :class:`CheckpointError` saying what is wrong; the file is left untouched.
    """
    keep = ("the file was left as it is; move it away (or pick another --out) to start afresh")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError,
            ValueError, TypeError, AttributeError, KeyError, IndexError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); {keep}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dartsfast search checkpoint; {keep}")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {payload.get('format_version')}, "
                              f"this dartsfast reads {FORMAT_VERSION}; {keep}")
    try:
        saved = SearchConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an unusable config ({e}); {keep}") from e
    diffs = config.differences(saved)
    if diffs:
        raise CheckpointError(f"checkpoint {path} was made with other settings "
                              f"(checkpoint != this run): {'; '.join(diffs)}; {keep}")
    return payload


def checkpoint_path(out: str) -> str:
    return os.path.join(out, CHECKPOINT_FILE)
