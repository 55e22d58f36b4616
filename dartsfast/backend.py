"""Which implementation runs each fused op: ``auto | torch | triton | cuda``.

The choice is process-global (``set_backend`` or env ``DARTSFAST_BACKEND``) and is
read when an op *runs*, not when it is traced, so a ``torch.compile``d model follows
a later ``set_backend`` without recompiling.

Op packages register their kernels here with :func:`register_kernel`; the torch
reference of every op is registered under ``"torch"`` and is the fallback. Triton
kernels are registered whenever triton is installed and load on their first call.

``auto`` picks, for CUDA tensors: the CUDA extension's kernel, then Triton's, then
the torch reference; for any other device: the torch reference.
An explicit ``triton``/``cuda`` choice uses that backend's kernel for every op that
has one and falls back to the torch reference (with a one-time warning naming the
op) for ops that have none yet; asking for a backend that cannot run at all raises
:class:`BackendUnavailableError` saying why.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from typing import Callable, Iterator

import torch

from dartsfast import _ext, _triton
from dartsfast._triton import interpreter_enabled as triton_interpreter_enabled

BACKENDS = ("auto", "torch", "triton", "cuda")
ENV_VAR = "DARTSFAST_BACKEND"

_kernels: dict[str, dict[str, Callable]] = {}
_chosen: str | None = None  # None: not set yet, read ENV_VAR on first use
_warned_fallbacks: set[tuple[str, str]] = set()


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this machine (the message says why)."""


def register_kernel(op: str, backend: str) -> Callable[[Callable], Callable]:
    """Decorator: ``fn`` implements ``op`` for ``backend`` (one of torch/triton/cuda)."""
    if backend not in BACKENDS[1:]:
        raise ValueError(f"cannot register a kernel for backend {backend!r}; expected one of {BACKENDS[1:]}")

    def decorate(fn: Callable) -> Callable:
        _kernels.setdefault(op, {})[backend] = fn
        return fn

    return decorate


def kernels_for(op: str) -> tuple[str, ...]:
    """Backends that have a kernel registered for ``op``."""
    return tuple(_kernels.get(op, {}))


def why_unavailable(name: str) -> str:
    """Empty string when backend ``name`` can run here, else the reason it cannot."""
    if name not in BACKENDS:
        return f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}"
    if name in ("auto", "torch"):
        return ""
    if name == "triton":
        if not sys.platform.startswith("linux"):
            return "Triton is only available on Linux"
        if not _triton.installed():
            return "the 'triton' package is not installed (pip install triton)"
        if not torch.cuda.is_available() and not triton_interpreter_enabled():
            return ("no CUDA device is visible and the Triton interpreter is off; "
                    "set TRITON_INTERPRET=1 before importing triton to run Triton kernels on the CPU")
        return ""
    if not _ext.HAS_EXT:
        return f"the CUDA extension dartsfast._C is not available: {_ext.WHY_NOT}"
    if not torch.cuda.is_available():
        return "the CUDA extension is built but no CUDA device is visible"
    return ""


def _checked(name: str, label: str) -> str:
    """``name`` normalised, or a ValueError / BackendUnavailableError that starts with ``label``."""
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"{label} is not a backend; expected one of {', '.join(BACKENDS)}")
    reason = why_unavailable(name)
    if reason:
        raise BackendUnavailableError(f"{label} is unavailable: {reason}")
    return name


def set_backend(name: str) -> None:
    """Choose the backend for all fused ops; raises if it cannot run here."""
    global _chosen
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a str, got {type(name).__name__}")
    _chosen = _checked(name, f"backend {name!r}")


def get_backend() -> str:
    """The chosen backend name (from ``set_backend``, else ``$DARTSFAST_BACKEND``, else ``auto``)."""
    global _chosen
    if _chosen is None:
        from_env = os.environ.get(ENV_VAR, "auto").strip() or "auto"
        _chosen = _checked(from_env, f"{ENV_VAR}={from_env!r}")
    return _chosen


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Context manager: run the block with backend ``name``, then restore the previous one."""
    global _chosen
    previous = _chosen
    set_backend(name)
    try:
        yield
    finally:
        _chosen = previous


def select(op: str, device: torch.device) -> tuple[str, Callable]:
    """The (backend name, kernel) that runs ``op`` on tensors living on ``device``."""
    available = _kernels.get(op)
    if not available or "torch" not in available:
        raise KeyError(f"op {op!r} has no torch reference registered")
    chosen = get_backend()
    on_cuda = device.type == "cuda"
    if chosen == "torch":
        return "torch", available["torch"]
    if chosen == "auto":
        if on_cuda:
            for name in ("cuda", "triton"):
                if name in available and not why_unavailable(name):
                    return name, available[name]
        return "torch", available["torch"]
    # An explicit triton / cuda choice.
    if chosen == "cuda" and not on_cuda:
        raise ValueError(f"backend 'cuda' runs CUDA tensors only, but {op} got tensors on {device}")
    if chosen == "triton" and not on_cuda and not triton_interpreter_enabled():
        raise ValueError(f"backend 'triton' got tensors on {device}: move them to CUDA "
                         "or set TRITON_INTERPRET=1 before importing triton")
    if chosen in available:
        return chosen, available[chosen]
    if (op, chosen) not in _warned_fallbacks:
        _warned_fallbacks.add((op, chosen))
        warnings.warn(f"dartsfast: {op} has no {chosen!r} kernel yet; using the torch reference",
                      RuntimeWarning, stacklevel=3)
    return "torch", available["torch"]
