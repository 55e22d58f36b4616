"""Benchmark one DARTS search step (issue 3): an architecture step on a validation batch plus
a weight step on a training batch, first and second order, through the real search loop
(:class:`dartsfast.search.loop.SearchRun`: data on the device, no host syncs in the step).

The seed configuration: 8 cells, 16 channels, batch 64, 28×28×1 inputs, 10 classes, ops
dsconv_3x3, mbconv_3x3, fused_mbconv_3x3, none (the Fashion-MNIST search). On CUDA it runs
eager in fp32 and bf16 autocast with channels_last. ``--quick`` (automatic without CUDA)
times a 3-cell, 4-channel supernet at 8×8 so CI exercises the script in seconds;
``--config seed`` forces the seed configuration on the CPU too (minutes per step there).

Beside the time, each record counts one more step (the search is launch-bound at these
shapes, so these counts matter as much as the time): ``aten_ops`` dispatched (a
TorchDispatchMode, the CPU-countable proxy for launches), ``host_syncs`` among them
(``aten::_local_scalar_dense``: ``.item()`` and friends), and on CUDA, from the torch
profiler, ``kernel_launches`` (kernels, memcpys and memsets on the device), the device's
busy time (Σ of their durations) and ``gpu_busy_pct`` = busy time / the step's wall time.

    python benchmarks/bench_search_step.py --out results/bench_search_step.json [--config seed]
    # the seed configuration on a CPU: one untimed and one timed step per order, no time cap
    python benchmarks/bench_search_step.py --config seed --warmup 0 --repeats 1 --max-seconds 3600
"""
from __future__ import annotations

import time

import harness  # benchmarks/harness.py: also puts this checkout on sys.path
import torch

from dartsfast.bench.opcount import CONFIGS, OpCounter, make_run


def add_options(parser) -> None:
    parser.add_argument("--config", choices=tuple(CONFIGS), default=None,
                        help="network size (default: seed on CUDA, tiny with --quick / on CPU)")
    parser.add_argument("--orders", default="1,2", help="comma-separated bilevel orders to time")


def count_step(step, device: torch.device) -> dict:
    """One step under the op counter, then (CUDA) one under the torch profiler."""
    counter = OpCounter()
    with counter:
        step()
    out = {"aten_ops": counter.ops, "host_syncs": counter.syncs,
           "kernel_launches": None, "gpu_busy_s": None, "gpu_busy_pct": None}
    if device.type != "cuda":
        return out
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize(device)
        wall = time.perf_counter() - t0
    # Device-side activities: kernels, memcpy, memset (each one launch). One stream, so
    # their durations do not overlap and their sum is the time the device was busy.
    device_events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    busy = sum(e.time_range.elapsed_us() for e in device_events) / 1e6
    out.update(kernel_launches=len(device_events), gpu_busy_s=busy, gpu_busy_pct=100.0 * busy / wall)
    return out


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0], configure=add_options)
    device = torch.device(args.device)
    name = args.config or ("tiny" if args.quick else "seed")
    amps = ("off", "bf16") if device.type == "cuda" else ("off",)
    columns = ("images_per_s", "aten_ops", "host_syncs", "kernel_launches", "gpu_busy_pct")
    # On CUDA the step runs eagerly and as a CUDA graph (dartsfast.search.graph_step): the
    # graph's warm-up is 3 eager calls plus the capturing call, all before the timed repeats.
    providers = (("eager", False), ("cuda_graph", True)) if device.type == "cuda" else (("eager", False),)
    with harness.BenchRun("search_step", args, extra_columns=columns) as bench:
        for amp in amps:
            for order in sorted({int(o) for o in args.orders.split(",")}):
                for provider, graph in providers:
                    measure(bench, name, order, amp, device, provider, graph)


def measure(bench, name: str, order: int, amp: str, device: torch.device, provider: str, graph: bool) -> None:
    run = make_run(name, order, amp, device, cuda_graph=graph)
    sums = [torch.zeros((), device=device) for _ in range(3)]
    batch = CONFIGS[name]["batch_size"]
    heavy = name == "seed" and device.type == "cpu"  # minutes per step: one timed step
    rec = bench.time(lambda run=run, sums=sums: run.step(*sums), params={"config": name, "order": order, **{
        k: v for k, v in CONFIGS[name].items() if k != "ops"}}, provider=provider,
        dtype="bf16-autocast" if amp == "bf16" else torch.float32,
        layout="channels_last" if run.channels_last else "nchw",
        warmup=1 if heavy else 5, repeats=1 if heavy else 10)
    if rec.get("median_s"):
        rec["images_per_s"] = batch / rec["median_s"]
        try:  # counts are extra: a profiler failure must not lose the timing
            rec.update(count_step(lambda run=run, sums=sums: run.step(*sums), device))
        except Exception as exc:
            rec["count_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    del run


if __name__ == "__main__":
    main()
