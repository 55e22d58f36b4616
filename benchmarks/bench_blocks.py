"""Benchmark the EfficientNetV2 blocks (issue 6): MBConv vs Fused-MBConv at every stage of
EfficientNetV2-S (384×384 input), eager vs torch.compile vs the fused dwconv_se middle.

On CUDA: batch 128, bf16, channels_last, training (forward + backward + SGD step) and
inference; 11 stage positions × 2 blocks. Eager and fused run first (~66 cases, ~0.3 s
each at 5 + 20 calls); cold inductor compiles (~5–20 s per block) fill what is left of
--compile-budget (default 30 s) and --max-seconds (default 90 s; a compile that would
overrun it is skipped), so the script ends well inside 120 s on an H100.
On CPU (or --quick): the same stages at a 32×32 input, batch 2, fp32, NCHW, eager and
fused, 1 thread, 3 timed calls: ~5–15 s on a 2-core runner.

Writes next to --out (gpu_suite.sh passes OUTDIR/bench_blocks.json):
    bench_blocks.json           the profile document (schema: dartsfast.records)
    bench_blocks.md             MBConv vs Fused-MBConv per stage + every record
    bench_blocks_stages.png     latency per stage for both blocks
    bench_blocks_roofline.png   every block on the measured roofline
The JSON is written even when the run is stopped (SIGTERM from the suite's timeout),
marked "complete": false.

    python benchmarks/bench_blocks.py --out results/bench_blocks.json [--quick]
"""
from __future__ import annotations

import signal
import sys

import harness  # benchmarks/harness.py: also puts this checkout on sys.path

from dartsfast import records
from dartsfast.profiling import plots, presets, report
from dartsfast.profiling.profiler import ProfileRun, iter_cases

FULL = dict(input_size=384, batch_sizes=(128,), dtypes=("bfloat16",), layouts=("channels_last",),
            impls=("eager", "fused", "compile"), modes=("training", "inference"), warmup=5, repeats=20)
QUICK = dict(input_size=32, batch_sizes=(2,), dtypes=("float32",), layouts=("nchw",),
             impls=("eager", "fused"), modes=("training", "inference"), warmup=1, repeats=3)


def configure(parser) -> None:
    parser.add_argument("--compile-budget", type=float, default=30.0,
                        help="seconds of torch.compile after which compile cases are skipped (default 30)")
    parser.add_argument("--cuda-graph", action="store_true", help="also time CUDA-graph replay")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    # 90 s, not the harness's 100: the last case started in time (a compile, ~20 s at worst)
    # and the plots still end inside ~120 s.
    parser.set_defaults(max_seconds=90.0)


def main(argv=None) -> int:
    args = harness.parse_args(__doc__.split("\n\n")[0], argv, configure)
    plan = dict(QUICK if args.quick else FULL)
    if args.batch_size:
        plan["batch_sizes"] = (args.batch_size,)
    specs = presets.block_specs(presets.effnetv2_s(plan["input_size"]), ("mbconv", "fused_mbconv"))
    run = ProfileRun(args.device, plan["dtypes"], warmup=args.warmup if args.warmup is not None else plan["warmup"],
                     repeats=args.repeats or plan["repeats"], cuda_graph=args.cuda_graph,
                     max_seconds=args.max_seconds, compile_budget_s=args.compile_budget,
                     progress=sys.stderr.isatty(), threads=1 if args.device.type == "cpu" else None)
    config = dict(benchmark="bench_blocks", quick=args.quick, preset="effnetv2-s",
                  **{k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()})

    def on_sigterm(signum, frame):  # the suite's timeout: still write what was measured
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    complete = False
    try:
        run.run(iter_cases(specs, plan["dtypes"], plan["layouts"], plan["impls"], plan["modes"],
                           plan["batch_sizes"]))
        complete = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        doc = run.document(config, complete=complete)
        if args.out is not None:
            records.write_document(args.out, doc)
            report.write_markdown(str(args.out.with_suffix(".md")), doc)
    if args.out is not None:
        stem = args.out.with_suffix("")
        plots.plot_stage_latency(doc["records"], f"{stem}_stages.png")
        plots.plot_roofline(doc["records"], doc["ceilings"], f"{stem}_roofline.png")
    print(f"## bench_blocks on {doc['environment']['device_name']} ({doc['seconds']:.0f} s)\n")
    print(report.comparison_markdown(doc["records"]))
    counts = {s: sum(r["status"] == s for r in doc["records"]) for s in records.PROFILE_STATUSES}
    print("records: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
