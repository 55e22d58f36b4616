"""Result files written atomically: a crash never leaves a truncated or half-written file."""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
from typing import Any, BinaryIO, Callable

import torch

# The temp file of a write to DIR/NAME is DIR/.NAME.<8 random characters>.tmp (mkstemp's
# names); a killed write leaves one behind, which dartsfast.rundir removes.
_TEMP_SUFFIX = ".tmp"
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}" + re.escape(_TEMP_SUFFIX) + "$")


def is_temp_file_name(name: str) -> bool:
    """Whether ``name`` (a base name) is the temp file of an :func:`atomic_write`."""
    return bool(_TEMP_NAME.match(name))


def atomic_write(path: str, write: Callable[[BinaryIO], Any],
                 verify: Callable[[str], None] | None = None) -> None:
    """``write(file_object)`` into a temp file beside ``path``, fsync, then rename over it.

    ``os.replace`` is atomic on POSIX within one filesystem, so readers see the old
    file or the new one, never a mix; on any error the temp file is removed and the
    old file is untouched. ``verify(temp_path)``, if given, runs after the fsync and
    before the rename: it raises to keep the old file when the new one did not come out
    as meant.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=_TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if verify is not None:
            verify(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def torch_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` as bytes, for :func:`atomic_write` to write.

    Serialised in memory rather than into the file: on a full disk torch's zip writer
    raises ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``, while a
    plain write raises ``OSError(ENOSPC)``, which callers (and the CLI) report as such.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_json(path: str, data: Any) -> None:
    """``data`` as indented JSON, atomically (strict JSON: NaN/inf raise ValueError)."""
    text = json.dumps(data, indent=2, allow_nan=False).encode()
    atomic_write(path, lambda f: f.write(text))
