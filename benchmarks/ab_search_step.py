"""Old vs new search step on this machine, in one run: two source trees, fresh processes
alternating A B B A … so that drift of a shared machine hits both alike.

Each process imports dartsfast from its tree (no install: the tree goes first on
sys.path), builds a configuration of :mod:`dartsfast.bench.opcount` (``seed``: the
Fashion-MNIST search network), takes one untimed step (optimiser state, oneDNN
primitives), then times ``--steps`` steps and reports their median, the aten ops of one
step, the process's peak resident memory (``ru_maxrss``: data, network, optimiser
state and the step's activations; the same for both trees except what the step does),
and the peak of live tensor bytes in one more step (:mod:`dartsfast.bench.live_memory`:
what the step allocates, without what glibc keeps of freed blocks).

    python benchmarks/ab_search_step.py --base /tmp/old --head . --rounds 2 --out result.json
    # one tree, two settings: per-edge vs batched supernet at the digits job's size
    python benchmarks/ab_search_step.py --base . --head . --set layers=3 channels=8 image_size=16 \
        --base-set edge_batching=false --head-set edge_batching=true

Writes JSON (atomically) with every sample and the head/base ratios of the medians.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import harness  # noqa: F401  (puts this checkout on sys.path)

from dartsfast._io import write_json
from dartsfast.timing import environment_info

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(int(sys.argv[5]))
from dartsfast.bench.opcount import OpCounter, make_run
run = make_run(sys.argv[2], order=int(sys.argv[3]), batch_size=int(sys.argv[6]) or None, **json.loads(sys.argv[7]))
sums = [torch.zeros(()) for _ in range(3)]
run.step(*sums)
times = []
for _ in range(int(sys.argv[4])):
    t0 = time.perf_counter()
    run.step(*sums)
    times.append(time.perf_counter() - t0)
counter = OpCounter()
with counter:
    run.step(*sums)
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # a tree from before dartsfast.bench.live_memory existed reports no live peak
    from dartsfast.bench.live_memory import peak_live_bytes
    live_mb = peak_live_bytes(lambda: run.step(*sums)) / 2**20
except ImportError:
    live_mb = None
print(json.dumps({"step_s": times, "aten_ops": counter.ops, "host_syncs": counter.syncs,
                  "peak_rss_mb": rss_mb, "peak_live_mb": live_mb}))
"""


def _overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs for make_run (VALUE as JSON: 3, false, "x"; else a string)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def measure(tree: str, overrides: dict, args) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree), args.config, str(args.order),
                          str(args.steps), str(args.threads), str(args.batch_size), json.dumps(overrides)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="source tree of the old code")
    p.add_argument("--head", default=".", help="source tree of the new code")
    p.add_argument("--config", default="seed")
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=0, help="0: the configuration's")
    p.add_argument("--steps", type=int, default=3, help="timed steps per process")
    p.add_argument("--rounds", type=int, default=2, help="A B B A rounds (2 processes per tree each)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="make_run overrides for both sides, e.g. layers=3 channels=8 (VALUE read as JSON)")
    p.add_argument("--base-set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides of the base side only")
    p.add_argument("--head-set", nargs="*", default=[], metavar="KEY=VALUE", help="the same for the head side")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    common = _overrides(args.set)
    overrides = {"base": {**common, **_overrides(args.base_set)}, "head": {**common, **_overrides(args.head_set)}}
    samples = {"base": [], "head": []}
    for r in range(args.rounds):
        for side in ("base", "head", "head", "base"):
            result = measure(getattr(args, side), overrides[side], args)
            samples[side].append(result)
            print(f"round {r} {side}: median {statistics.median(result['step_s']):.3f} s, "
                  f"{result['aten_ops']} ops, peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    summary = {}
    for side, runs in samples.items():
        steps = [t for run in runs for t in run["step_s"]]
        summary[side] = {"median_step_s": statistics.median(steps), "min_step_s": min(steps),
                         "aten_ops": runs[0]["aten_ops"], "host_syncs": runs[0]["host_syncs"],
                         "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
                         "peak_live_mb": runs[0].get("peak_live_mb")}
    ratios = {k: summary["head"][k] / summary["base"][k]
              for k in ("median_step_s", "min_step_s", "aten_ops", "peak_rss_mb", "peak_live_mb")
              if summary["head"][k] and summary["base"][k]}
    report = {"config": args.config, "overrides": overrides, "order": args.order, "threads": args.threads,
              "steps": args.steps,
              "rounds": args.rounds, "machine": environment_info("cpu"),
              "torch": __import__("torch").__version__, "summary": summary, "head_over_base": ratios,
              "samples": samples}
    print(json.dumps({"summary": summary, "head_over_base": ratios}, indent=1))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
