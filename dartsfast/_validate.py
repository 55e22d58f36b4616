"""Every scalar check in one place: config fields (``field_error`` & co.) and module
arguments (``check_*``). A bool is never an int or a number here: ``epochs=True`` is a bug."""
from __future__ import annotations

import math
import os
from numbers import Integral, Real

import torch


def is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def is_real(v: object) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def field_error(config: object, name: str, want: str) -> ValueError:
    """``ValueError('<Config>.<name> must be <want>, got <value>')``."""
    return ValueError(f"{type(config).__name__}.{name} must be {want}, got {getattr(config, name)!r}")


def check_device_field(config: object, name: str = "device") -> None:
    """The field holds 'auto' or a string torch.device() accepts (a torch.device is fine too)."""
    value = getattr(config, name)
    if not isinstance(value, (str, torch.device)):
        raise field_error(config, name, "'auto' or a torch device string")
    if value != "auto":
        try:
            torch.device(value)
        except (RuntimeError, ValueError) as e:
            raise field_error(config, name, f"'auto' or a torch device string ({e})") from None


def normalise_path_fields(config: object, names: tuple) -> None:
    """Each field is None or a path (str / os.PathLike), stored back as a str."""
    for name in names:
        value = getattr(config, name)
        if value is not None:
            if not isinstance(value, (str, os.PathLike)):
                raise field_error(config, name, "None or a directory path")
            setattr(config, name, os.fspath(value))


def existing_file(path, default_name: str, what: str) -> str:
    """``path`` (str or os.PathLike) as a str naming a file: a directory means ``path/default_name``.

    FileNotFoundError ``'<what> file not found: <path>'`` if there is no such file.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, default_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} file not found: {path}")
    return path


# ----------------------------------------------------------------------------- module arguments
# Every check raises ValueError with the argument's name first, so a bad block config in
# a search space points straight at the field to fix.

def check_channels(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_kernel_size(name: str, value: object) -> int:
    # Odd only: 'same' padding k//2 keeps H, W (stride 1) for odd k alone.
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0 or value % 2 == 0:
        raise ValueError(f"{name} must be a positive odd int (3, 5, ...), got {value!r}")
    return int(value)


def check_stride(name: str, value: object) -> int:
    if isinstance(value, bool) or value not in (1, 2):
        raise ValueError(f"{name} must be 1 or 2, got {value!r}")
    return int(value)


def _check_real(name: str, value: object) -> float:
    if not is_real(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    v = _check_real(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return v


def check_non_negative(name: str, value: object) -> float:
    v = _check_real(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return v


def check_probability(name: str, value: object) -> float:
    # p == 1 would drop every sample and scale survivors by 1/0: reject it.
    v = _check_real(name, value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v
