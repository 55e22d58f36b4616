"""Block profiling: the profiler, the FLOP/byte cost models, shape presets, the latency LUT,
the ceilings, plots and the Markdown report.

The timer and environment record live one layer down in :mod:`dartsfast.timing` (shared with
:mod:`dartsfast.bench`); they are re-exported here, where they were first published.
"""
from dartsfast.profiling.lut import Lut, build_lut, load_lut, save_lut
from dartsfast.profiling.profiler import ProfileRun, profile
from dartsfast.timing import TimingStats, environment_info, measure_copy_bandwidth, time_fn

__all__ = ["Lut", "ProfileRun", "TimingStats", "build_lut", "environment_info", "load_lut", "measure_copy_bandwidth",
           "profile", "save_lut", "time_fn"]
