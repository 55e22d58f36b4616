"""Whether Triton can be used here, asked without importing it.

``import dartsfast`` must not import triton (kernel modules load on their first call),
so both questions read only the import system and the environment. Registration
(``dartsfast.ops.*``), the backend choice and the kernel modules all ask here.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os

import torch


def installed() -> bool:
    """True when a ``triton`` package is importable (it is not imported)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_enabled() -> bool:
    """``TRITON_INTERPRET=1``: Triton runs kernels on CPU tensors. Triton reads it when a
    kernel is defined, i.e. when a kernel module is first imported (the first kernel call)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def device_guard(device: torch.device):
    """Triton launches on the current CUDA device: make it ``device`` (tensors on cuda:1
    need cuda:1 current); a no-op off CUDA (the interpreter)."""
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
