"""Device, mixed precision and timing helpers shared by the search and training loops."""
from __future__ import annotations

import os
import resource

import torch
import torch.nn as nn
import torch.nn.functional as F

AMP_MODES = ("off", "bf16", "fp16")
_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name, what: str = "device") -> torch.device:
    """'auto' → CUDA when visible, else CPU; a CUDA name without a GPU is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} is {name!r} but no CUDA device is visible")
    return device


def autocast(device: torch.device, amp: str):
    """``torch.autocast`` for amp mode 'off' | 'bf16' | 'fp16' on ``device``."""
    return torch.autocast(device.type, dtype=_AMP_DTYPES.get(amp, torch.float32), enabled=amp != "off")


# Devices with fused (one-kernel, multi-tensor) SGD and Adam in torch >= 2.4, CPU included.
_FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def optimizer_options(device: torch.device, amp: str = "off") -> dict:
    """Keyword arguments that make a torch optimizer update every parameter in one kernel.

    A search step updates ~3,300 small tensors (seed configuration); the per-tensor loop
    dispatches ~4 ops for each (13,100 of the step's 35,900 ops), and Adam's loop reads
    each step counter with ``.item()``. ``fused=True`` does the update in one op per
    optimizer and needs no ``.item()``. Other devices, and fp16, get the multi-tensor
    (foreach) loop: when GradScaler skips the first step (inf/NaN gradients), fused SGD
    (torch 2.11 and 2.14) leaves its new momentum buffers uninitialised (`empty_like`) and
    later steps read the garbage; our fp16 CPU training test diverged on it.
    """
    fused = device.type in _FUSED_OPTIMIZER_DEVICES and amp != "fp16"
    return {"fused": True} if fused else {"foreach": True}


def device_memory_bytes(device: torch.device) -> int:
    """All the memory of ``device``: a CUDA device's total, or the machine's physical RAM."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def synchronize(device: torch.device) -> None:
    """Wait for the device (for wall-clock timing at epoch boundaries only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  amp: str, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, number correct) as 0-d device tensors; eval mode, restored after."""
    batches = ((x[s:s + batch_size], y[s:s + batch_size]) for s in range(0, x.shape[0], batch_size))
    return evaluate_batch_sums(model, batches, x.device, amp, channels_last)


@torch.no_grad()
def evaluate_batch_sums(model: nn.Module, batches, device: torch.device, amp: str,
                        channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`evaluate_sums` over an iterable of ``(xb, yb)`` batches on ``device`` (tensor
    slices, or a streamed set's batches)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    try:
        for xb, yb in batches:
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(xb)
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return loss_sum, correct


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak for :func:`peak_memory_bytes` (per epoch in the search's history)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux >= 4.0: "5" resets the process's peak resident set (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's since it started


def peak_memory_bytes(device: torch.device) -> int:
    """Peak since :func:`reset_peak_memory`: CUDA ``max_memory_allocated`` (tensors), or on a
    CPU the process's peak resident set (VmHWM: tensors, code, allocator caches)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
