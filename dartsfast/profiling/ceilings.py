"""The ceilings a block's achieved GB/s and TFLOP/s are reported against, measured in the
same run on the same device: a large copy (bandwidth) and a large matmul per dtype (compute).

Why measured and not the datasheet: an H100 SXM copies at ~2.6–3.0 TB/s of its 3.35 TB/s
peak, and a dense bf16 matmul reaches ~600–750 of its 989 TFLOP/s; a block can approach
the practical ceiling, never the datasheet one.

fp32 convs run as TF32 on Ampere and later under PyTorch's default
``torch.backends.cudnn.allow_tf32 = True``, while fp32 matmuls do not (``matmul.allow_tf32``
defaults to False); the fp32 ceiling is therefore timed with the matmul TF32 flag set to the
cuDNN one, so convs are compared with what they can actually reach.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

from dartsfast.timing import DEFAULT_COPY_BYTES_CUDA, measure_copy_bandwidth, time_fn

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# 8192² matmul: 1.1 TFLOP per call, ~1.5 ms in bf16 on an H100 — long enough for stable
# events, large enough to saturate the tensor cores (4096² reaches ~90% of it).
CUDA_MATMUL_SIZE = 8192
# On a CPU the ceilings only need to exist for the records and the roofline: 256² fp32 is
# 34 MFLOP, ~1 ms on a 2-core CI runner; 16 MiB copies in ~5 ms.
CPU_MATMUL_SIZE = 256
CPU_COPY_BYTES = 16 << 20


@dataclasses.dataclass
class Ceilings:
    """Measured ceilings; a value is None where it could not be measured (the reason beside)."""

    device_type: str
    bandwidth_bytes_per_s: float | None
    copy_bytes: int
    compute_flops_per_s: dict          # dtype name → FLOP/s or None
    matmul_size: int
    fp32_math: str                     # "tf32" or "ieee"
    notes: dict = dataclasses.field(default_factory=dict)  # dtype name → why None

    def compute(self, dtype_name: str) -> float | None:
        return self.compute_flops_per_s.get(dtype_name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


@contextlib.contextmanager
def _matmul_tf32(enabled: bool):
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def matmul_flops_per_s(device: torch.device, dtype: torch.dtype, n: int, *, warmup: int = 3,
                       repeats: int = 10) -> float:
    """FLOP/s of an n×n by n×n matmul (2n³ FLOP) in ``dtype``, median of ``repeats``."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
    b = torch.randn(n, n, device=device, dtype=torch.float32, generator=gen).to(dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cudnn.allow_tf32 if dtype == torch.float32 else torch.backends.cuda.matmul.allow_tf32
    with _matmul_tf32(tf32):
        stats = time_fn(lambda: torch.mm(a, b, out=c), warmup=warmup, repeats=repeats, device=device)
    return 2.0 * n ** 3 / stats.median


def measure_ceilings(device, dtypes=("float32",)) -> Ceilings:
    """Copy bandwidth and one matmul ceiling per dtype name on ``device`` (~0.1 s on an H100).

    A CPU uses the small sizes above. fp16 on a CPU is not measured (None): it is not a
    format the profiler times there.
    """
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    copy_bytes = DEFAULT_COPY_BYTES_CUDA if on_cuda else CPU_COPY_BYTES
    n = CUDA_MATMUL_SIZE if on_cuda else CPU_MATMUL_SIZE
    reps = {} if on_cuda else dict(warmup=1, repeats=5)
    notes: dict = {}
    try:
        bandwidth = measure_copy_bandwidth(device, copy_bytes, **reps)
    except (RuntimeError, ValueError) as exc:  # e.g. out of memory: the records still get written
        bandwidth, notes["bandwidth"] = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    compute: dict = {}
    for name in dtypes:
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
        if name == "float16" and not on_cuda:
            compute[name], notes[name] = None, "float16 is not profiled on CPU"
            continue
        try:
            compute[name] = matmul_flops_per_s(device, DTYPES[name], n, **reps)
        except (RuntimeError, ValueError) as exc:
            compute[name], notes[name] = None, f"{type(exc).__name__}: {exc}".splitlines()[0]
    fp32_math = "tf32" if on_cuda and torch.backends.cudnn.allow_tf32 else "ieee"
    return Ceilings(device.type, bandwidth, copy_bytes, compute, n, fp32_math, notes)
