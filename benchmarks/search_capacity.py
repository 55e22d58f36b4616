"""How big a search fits in a device's memory: fast vs lean mode at CIFAR-10 shapes.

A per-step activation model, measured: the peak of live tensor bytes of one first-order
search step (:func:`dartsfast.bench.live_memory.peak_live_bytes`: torch's allocations,
not what an allocator keeps of freed blocks) at several batch sizes, fitted as
``peak(B) = a + b·B``. The fixed part of a run is counted from the run itself: weights
and their momentum, the alphas' Adam state, and the two halves of the training
set resident on the device (CIFAR-10: 50000 × 3 × 32 × 32 × 4 B = 614 MB). Then the
largest batch that fits a budget M is ``(M − reserve − fixed − a) / b``, with ``reserve``
(1 GiB) for what a GPU process holds outside torch's tensors (CUDA context, cuDNN and
cuBLAS workspaces). Measured on a CPU, where the same tensors are allocated; on a GPU the
caching allocator's rounding and fragmentation come on top, which is why the table is a
model and ``gpu_suite`` checks it on the device when one is lent.

    python benchmarks/search_capacity.py --out benchmarks/results/DATE-cpu-search-capacity/capacity.json
"""
from __future__ import annotations

import argparse
import sys

import harness  # noqa: F401  (puts this checkout on sys.path)
import torch

from dartsfast._io import write_json
from dartsfast.bench.live_memory import peak_live_bytes
from dartsfast.bench.opcount import make_run
from dartsfast.timing import environment_info

GIB = 2**30
CIFAR10_TRAIN_BYTES = 50000 * 3 * 32 * 32 * 4  # fp32, resident on the device (both halves)
RESERVE_BYTES = GIB


def fixed_bytes(run) -> int:
    """Weights + SGD momentum, and the alphas with Adam's two moments, plus the resident data.

    Gradients are not here: the step sets them to None and allocates them anew, so the
    step's peak counts them (the profiler sees those allocations, not the frees of the
    blocks from before it started)."""
    weights = sum(p.numel() * p.element_size() for p in run.model.weights())
    alphas = sum(p.numel() * p.element_size() for p in run.model.alphas())
    return 2 * weights + 3 * alphas + CIFAR10_TRAIN_BYTES


def measure(layout: bool, memory: str, batch: int, args) -> tuple[int, int]:
    """(peak live bytes of one step after a warm-up step, fixed bytes) for one setting."""
    run = make_run("seed", batch_size=batch, image_size=32, in_channels=3, layers=args.layers,
                   channels=args.channels, edge_batching=layout, memory=memory)
    sums = [torch.zeros(()) for _ in range(3)]
    run.step(*sums)  # optimiser state and gradients exist from here on, as in a search
    return peak_live_bytes(lambda: run.step(*sums)), fixed_bytes(run)


def fit(points: list[tuple[int, int]]) -> tuple[float, float, float]:
    """Least-squares a + b·B over (B, bytes); also the largest relative residual."""
    n = len(points)
    mean_b = sum(b for b, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    slope = sum((b - mean_b) * (y - mean_y) for b, y in points) / sum((b - mean_b) ** 2 for b, _ in points)
    intercept = mean_y - slope * mean_b
    residual = max(abs(intercept + slope * b - y) / y for b, y in points)
    return intercept, slope, residual


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--budgets-gib", type=float, nargs="+", default=[16, 80])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for layout, layout_name in ((True, "batched"), (False, "per-edge")):
        for memory in ("fast", "lean"):
            points, fixed = [], 0
            for batch in args.batches:
                peak, fixed = measure(layout, memory, batch, args)
                points.append((batch, peak))
                print(f"{layout_name} {memory} B={batch}: peak live {peak / 2**20:.0f} MiB", flush=True)
            a, b, residual = fit(points)
            largest = {str(m): max(0, int((m * GIB - RESERVE_BYTES - fixed - a) // b)) for m in args.budgets_gib}
            rows.append({"layout": layout_name, "memory": memory, "points": points, "intercept_bytes": a,
                         "bytes_per_sample": b, "fit_max_relative_residual": residual, "fixed_bytes": fixed,
                         "largest_batch": largest})
    lines = ["| supernet | memory | MiB per sample | " + " | ".join(f"largest batch in {m:g} GB"
                                                           for m in args.budgets_gib) + " |",
             "|---|---|---:|" + "---:|" * len(args.budgets_gib)]
    for row in rows:
        lines.append(f"| {row['layout']} | {row['memory']} | {row['bytes_per_sample'] / 2**20:.1f} | "
                     + " | ".join(f"{row['largest_batch'][str(m)]:,}" for m in args.budgets_gib) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        write_json(args.out, {"layers": args.layers, "channels": args.channels, "image": [3, 32, 32],
                              "order": 1, "reserve_bytes": RESERVE_BYTES, "machine": environment_info("cpu"),
                              "torch": torch.__version__, "rows": rows, "table_markdown": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
