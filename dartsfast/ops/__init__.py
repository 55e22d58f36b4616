"""Fused ops (no nn.Module here): one package per op, each with its torch reference
(``reference.py``), its Triton kernels (loaded on their first call) and, in its
``__init__``, the torch.library registration and the backend table entries."""
from dartsfast.ops.dwconv_se import dwconv_se, dwconv_se_ref
from dartsfast.ops.weighted_sum import weighted_sum, weighted_sum_ref

__all__ = ["dwconv_se", "dwconv_se_ref", "weighted_sum", "weighted_sum_ref"]
