"""The running-statistics update of a training-mode BatchNorm, in torch (the reference and
the CPU path):

    running_mean ← (1 − m)·running_mean + m·batch_mean
    running_var  ← (1 − m)·running_var  + m·batch_var·n/(n − 1)      (unbiased, as nn.BatchNorm2d)

with the same rounding steps as nn.BatchNorm2d's CPU kernel (each product rounded, then
the sum), so a module and the fused op track bit-identical statistics on the CPU.
"""
from __future__ import annotations

import torch


def update_running_stats_ref(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                             biased_var: torch.Tensor, count: int, momentum: float) -> None:
    with torch.no_grad():
        unbiased = biased_var * (count / (count - 1))
        batch = torch._foreach_mul([mean.to(running_mean.dtype), unbiased.to(running_var.dtype)], momentum)
        torch._foreach_mul_([running_mean, running_var], 1 - momentum)
        torch._foreach_add_([running_mean, running_var], batch)
