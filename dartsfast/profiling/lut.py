"""The latency lookup table of ``dartsfast profile --lut``: built, saved and loaded by
:mod:`dartsfast.search.latency_lut` (the search reads it, and the search layer sits below
profiling), re-exported here where it was first published."""
from dartsfast.search.latency_lut import DTYPES, NONE, SCHEMA, Lut, build_lut, check_lut, load_lut, lut_key, save_lut

__all__ = ["DTYPES", "NONE", "SCHEMA", "Lut", "build_lut", "check_lut", "load_lut", "lut_key", "save_lut"]
