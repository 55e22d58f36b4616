"""Guarded import of the compiled CUDA extension ``dartsfast._C``.

``HAS_EXT`` says whether it loaded; ``WHY_NOT`` says why not (empty when it did).
Never raises: without the extension the Triton and torch backends still work.
"""
from __future__ import annotations

import torch  # first: the extension links against libtorch and registers into its dispatcher

_BUILD_HINT = "build it with: DARTSFAST_BUILD_CUDA=1 pip install --no-build-isolation -e ."

HAS_EXT: bool = False
WHY_NOT: str = ""

try:
    from . import _C  # noqa: F401  (importing runs the TORCH_LIBRARY registrations)

    HAS_EXT = True
except ModuleNotFoundError as e:
    if e.name == f"{__package__}._C":
        WHY_NOT = f"the CUDA extension dartsfast._C is not built; {_BUILD_HINT}"
    else:
        WHY_NOT = f"the CUDA extension dartsfast._C failed to import: {e}; {_BUILD_HINT}"
except Exception as e:  # ImportError (undefined symbol, torch ABI mismatch), OSError, ...
    WHY_NOT = (f"the CUDA extension dartsfast._C failed to import ({type(e).__name__}: {e}); "
               f"rebuild it against the installed torch {torch.__version__}: {_BUILD_HINT}")


def has_op(name: str) -> bool:
    """True when the extension is loaded and registered ``torch.ops.dartsfast.<name>``
    (e.g. ``"weighted_sum_cuda"``).  Ops the Python side registers in the same namespace
    do not count without the extension."""
    if not HAS_EXT:
        return False
    try:
        return hasattr(torch.ops.dartsfast, name)
    except Exception:
        return False
