"""Profiling: timing, bandwidth ceilings and environment records (block profiler to come).

Kept light: importing this package pulls in only torch and the standard library.
"""
from dartsfast.profiling.timing import TimingStats, environment_info, measure_copy_bandwidth, time_fn

__all__ = ["TimingStats", "environment_info", "measure_copy_bandwidth", "time_fn"]
