"""Fused ops (no nn.Module here): one op per file, each with its torch reference."""
from dartsfast.ops.dwconv_se import dwconv_se, dwconv_se_ref
from dartsfast.ops.weighted_sum import weighted_sum, weighted_sum_ref

__all__ = ["dwconv_se", "dwconv_se_ref", "weighted_sum", "weighted_sum_ref"]
