"""The running-statistics update as one Triton kernel: 4 reads and 2 writes of C values in
one launch (the torch reference takes 4 launches on a GPU). Imported on the first Triton
call by :mod:`dartsfast.ops.running_stats`, never by ``import dartsfast``."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from dartsfast import _triton

# C is at most a few thousand channels: one program covers 1024 of them.
_BLOCK = 1024


@triton.jit
def _running_stats_update_kernel(rm_ptr, rv_ptr, mean_ptr, var_ptr, C, momentum, unbias, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < C
    rm = tl.load(rm_ptr + offs, mask=mask).to(tl.float32)
    rv = tl.load(rv_ptr + offs, mask=mask).to(tl.float32)
    mean = tl.load(mean_ptr + offs, mask=mask).to(tl.float32)
    var = tl.load(var_ptr + offs, mask=mask).to(tl.float32)
    new_rm = rm * (1.0 - momentum) + mean * momentum
    new_rv = rv * (1.0 - momentum) + (var * unbias) * momentum
    tl.store(rm_ptr + offs, new_rm.to(rm_ptr.dtype.element_ty), mask=mask)
    tl.store(rv_ptr + offs, new_rv.to(rv_ptr.dtype.element_ty), mask=mask)


def update_running_stats_triton(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                                biased_var: torch.Tensor, count: int, momentum: float) -> None:
    c = running_mean.numel()
    with _triton.device_guard(running_mean.device):
        _running_stats_update_kernel[(triton.cdiv(c, _BLOCK),)](
            running_mean, running_var, mean.contiguous(), biased_var.contiguous(), c, float(momentum),
            count / (count - 1), BLOCK=_BLOCK)
