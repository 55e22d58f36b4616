"""Device, mixed precision and timing helpers shared by the search and training loops."""
from __future__ import annotations

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


def synchronize(device: torch.device) -> None:
    """Wait for the device (for wall-clock timing at epoch boundaries only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate_sums(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                  amp: str, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed cross-entropy, number correct) as 0-d device tensors; eval mode, restored after."""
    was_training = model.training
    model.eval()
    device = x.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    try:
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp):
                logits = model(xb)
            loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
            correct += (logits.argmax(1) == yb).sum()
    finally:
        model.train(was_training)
    return loss_sum, correct
