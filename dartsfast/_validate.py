"""Type predicates for config validation (bool is not an int here: ``epochs=True`` is a bug)."""
from __future__ import annotations

import math
from numbers import Integral, Real


def is_int(v: object) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def is_real(v: object) -> bool:
    """A finite real number (not a bool)."""
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)
