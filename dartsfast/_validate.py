"""Config validation helpers (bool is not an int here: ``epochs=True`` is a bug)."""
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
