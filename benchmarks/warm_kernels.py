"""Compile and autotune every fused kernel once, timing the first call apart from the steady ones.

gpu_suite.sh runs this before the benchmarks so that Triton's JIT compiles (cached on disk
for the later processes) and the CUDA extension's first launch are paid here and reported
as ``compile_s`` = first call − median of the next calls, instead of hiding in (or being
dropped from) a benchmark's warm-up. Each case is (op, backend, dtype, layout, shape),
forward + backward, one call each time.

    python benchmarks/warm_kernels.py --out warm.json [--device cpu]   # cpu: interpreter, tiny
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from dartsfast import backend  # noqa: E402
from dartsfast._io import write_json  # noqa: E402
from dartsfast.ops import dwconv_se, weighted_sum  # noqa: E402
from dartsfast.ops.dwconv_se import OP as DWCONV_OP  # noqa: E402
from dartsfast.ops.weighted_sum import OP as WS_OP  # noqa: E402

STEADY_CALLS = {"cuda": 5, "cpu": 2}  # the interpreter takes seconds per call


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def weighted_sum_case(device, dtype, k: int, m: int):
    gen = torch.Generator(device=device).manual_seed(k + m)
    xs = [torch.randn(m, device=device, generator=gen).to(dtype).requires_grad_(True) for _ in range(k)]
    w = torch.softmax(torch.randn(k, device=device, generator=gen), 0).requires_grad_(True)

    def fwd_bwd():
        out = weighted_sum(xs, w)
        torch.autograd.grad(out, [*xs, w], torch.ones_like(out))
    return fwd_bwd


def dwconv_se_case(device, dtype, n: int, c: int, hw: int, k: int, stride: int):
    gen = torch.Generator(device=device).manual_seed(c + hw + k)

    def rnd(*shape, scale=1.0):
        return torch.randn(shape, device=device, generator=gen) * scale

    cr = max(1, c // 4)
    x = rnd(n, c, hw, hw).to(dtype).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    params = [rnd(c, 1, k, k, scale=0.3), rnd(c, scale=0.3) + 1, rnd(c, scale=0.3)]
    se = [rnd(cr, c, scale=0.5), rnd(cr, scale=0.3), rnd(c, cr, scale=0.5), rnd(c, scale=0.3)]
    leaves = [x, *(p.requires_grad_(True) for p in params), *(p.requires_grad_(True) for p in se)]
    stats = [torch.zeros(c, device=device), torch.ones(c, device=device)]

    def fwd_bwd():
        out = dwconv_se(leaves[0], *leaves[1:4], *stats, *leaves[4:], stride=stride, training=True)
        torch.autograd.grad(out, leaves, torch.ones_like(out))
    return fwd_bwd


def cases(device: torch.device):
    """(op, params, builder) in the shapes and dtypes the benchmarks use (tiny on a CPU)."""
    cpu = device.type == "cpu"
    dtypes = (torch.float32,) if cpu else (torch.bfloat16, torch.float32)
    m = 1 << 10 if cpu else 1 << 22
    for dtype in dtypes:
        for k in ((4,) if cpu else (4, 8, 20)):
            yield WS_OP, dict(dtype=str(dtype)[6:], K=k, M=m), lambda d=dtype, k=k: weighted_sum_case(device, d, k, m)
    for dtype in dtypes:
        # The interpreter takes seconds per call: on a CPU two variants show the plumbing works.
        for kernel, stride in (((3, 1), (5, 2)) if cpu else ((3, 1), (3, 2), (5, 1), (5, 2))):
            n, c, hw = (2, 8, 6) if cpu else (128, 256, 24)
            yield DWCONV_OP, dict(dtype=str(dtype)[6:], N=n, C=c, HW=hw, k=kernel, stride=stride), \
                lambda d=dtype, kk=kernel, s=stride, n=n, c=c, hw=hw: dwconv_se_case(device, d, n, c, hw, kk, s)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    names = ("triton", "cuda") if device.type == "cuda" else ("triton",)
    records = []
    for op, params, build in cases(device):
        for name in names:
            if name not in backend.kernels_for(op) or backend.why_unavailable(name):
                continue
            rec = {"op": op, "backend": name, **params, "first_s": None, "steady_s": None, "compile_s": None,
                   "error": ""}
            try:
                with backend.use_backend(name):
                    fn = build()
                    rec["first_s"] = _timed(fn, device)
                    rec["steady_s"] = statistics.median(_timed(fn, device) for _ in range(STEADY_CALLS[device.type]))
                rec["compile_s"] = max(rec["first_s"] - rec["steady_s"], 0.0)
            except Exception as exc:  # noqa: BLE001  (a failing kernel is a result; the rest still warm)
                rec["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            records.append(rec)
            print(f"warm {op:12s} {name:6s} {params}: first {rec['first_s']} s, steady {rec['steady_s']} s "
                  f"{rec['error']}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(str(args.out), {"device": str(device), "records": records})
    return 1 if any(r["error"] for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
