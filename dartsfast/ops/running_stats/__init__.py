"""BatchNorm's running-statistics update as one op, ``torch.ops.dartsfast.update_running_stats_``.

A fused op that computes batch statistics (``dwconv_se``) must leave the update of the
module's running statistics to a separate op: autograd cannot be registered for an op that
mutates its inputs. Written out in torch, that update is 4 dispatched ops per call (4
launches on a GPU); this op is one, and one Triton launch on the GPU. It is registered as
a mutating custom op (``running_mean``, ``running_var``), so ``torch.compile`` keeps it.
"""
from __future__ import annotations

import torch

from dartsfast import _triton, backend
from dartsfast.ops.running_stats.reference import update_running_stats_ref

__all__ = ["OP", "update_running_stats", "update_running_stats_ref"]

OP = "update_running_stats"

backend.register_kernel(OP, "torch")(update_running_stats_ref)


def _update_running_stats_triton(running_mean, running_var, mean, biased_var, count, momentum):
    if running_mean.dtype == torch.float64 or running_mean.numel() == 0:
        return update_running_stats_ref(running_mean, running_var, mean, biased_var, count, momentum)
    from dartsfast.ops.running_stats import triton as kernels  # lazy: imports triton, optional and heavy

    return kernels.update_running_stats_triton(running_mean, running_var, mean, biased_var, count, momentum)


if _triton.installed():
    backend.register_kernel(OP, "triton")(_update_running_stats_triton)


@torch.library.custom_op("dartsfast::update_running_stats_", mutates_args=("running_mean", "running_var"))
def _update_running_stats_op(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                             biased_var: torch.Tensor, count: int, momentum: float) -> None:
    _, kernel = backend.select(OP, running_mean.device)
    kernel(running_mean, running_var, mean, biased_var, count, momentum)


@_update_running_stats_op.register_fake
def _update_running_stats_fake(running_mean, running_var, mean, biased_var, count, momentum):
    return None


def update_running_stats(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
                         biased_var: torch.Tensor, count: int, momentum: float) -> None:
    """In place, as nn.BatchNorm2d in training: ``running ← (1 − m)·running + m·batch``, the
    variance made unbiased with ``count`` values per channel (``count`` ≥ 2).

    ``mean``, ``biased_var``: the batch statistics [C] (fp32, or the statistics' dtype).
    """
    if count < 2:
        raise ValueError(f"the running variance needs count >= 2 values per channel, got {count}")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if mean.requires_grad or biased_var.requires_grad:
        raise ValueError("mean and biased_var must not require grad (detach them): the update is not differentiable")
    torch.ops.dartsfast.update_running_stats_(running_mean, running_var, mean, biased_var, int(count), float(momentum))
