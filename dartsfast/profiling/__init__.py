"""Profiling: timing, ceilings and environment records; the block profiler and latency LUT.

Kept light: importing this package pulls in only torch and the standard library. The
profiler and LUT (which import the blocks and the search space) load on first access.
"""
from dartsfast.profiling.timing import TimingStats, environment_info, measure_copy_bandwidth, time_fn

# name → submodule, imported on first attribute access (PEP 562).
_LAZY = {"profile": "profiler", "ProfileRun": "profiler", "build_lut": "lut", "load_lut": "lut",
         "save_lut": "lut", "Lut": "lut"}

__all__ = ["TimingStats", "environment_info", "measure_copy_bandwidth", "time_fn", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"dartsfast.profiling.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dartsfast.profiling' has no attribute {name!r}")
