"""torch.compile'd supernet vs eager, one search step (issue 14): compile seconds and step time.

Each variant runs in a fresh process (so the compile cache of one does not serve the
other): it builds a configuration of :mod:`dartsfast.bench.opcount`, times its first
step (for a compiled supernet: tracing and code generation of the forward and backward,
plus the step), then the median of ``--steps`` more steps. Eager and compiled alternate
over ``--rounds``.

    python benchmarks/bench_compile_step.py --config tiny --backend inductor --out compile.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import harness  # noqa: F401  (puts this checkout on sys.path)

from dartsfast._io import write_json
from dartsfast.timing import environment_info

CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
from dartsfast.bench.opcount import make_run
config, backend, device, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = make_run(config, 1, device=device, batch_size=int(sys.argv[6]) or None)
if backend != "eager":
    run.model.net.compile(backend=backend)
sums = [torch.zeros((), device=device) for _ in range(3)]
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
t0 = time.perf_counter(); run.step(*sums); sync(); first = time.perf_counter() - t0
run.step(*sums); sync()
times = []
for _ in range(steps):
    t0 = time.perf_counter(); run.step(*sums); sync(); times.append(time.perf_counter() - t0)
print(json.dumps({"first_step_s": first, "step_s": times}))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--backend", default="inductor", help="torch.compile backend")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=0, help="0: the configuration's")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    samples = {"eager": [], args.backend: []}
    for _ in range(args.rounds):
        for variant in ("eager", args.backend):
            proc = subprocess.run([sys.executable, "-c", CHILD, args.config, variant, args.device, str(args.steps),
                                   str(args.threads), str(args.batch_size)], capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            samples[variant].append(result)
            print(f"{variant}: first step {result['first_step_s']:.2f} s, median step "
                  f"{statistics.median(result['step_s']):.4f} s", flush=True)
    summary = {v: {"first_step_s": statistics.median(r["first_step_s"] for r in runs),
                   "median_step_s": statistics.median(t for r in runs for t in r["step_s"])}
               for v, runs in samples.items()}
    eager, compiled = summary["eager"], summary[args.backend]
    report = {"config": args.config, "backend": args.backend, "device": args.device, "threads": args.threads,
              "machine": environment_info(args.device), "summary": summary,
              "compile_s": compiled["first_step_s"] - eager["first_step_s"],
              "step_time_compiled_over_eager": compiled["median_step_s"] / eager["median_step_s"],
              "samples": samples}
    print(json.dumps({k: report[k] for k in ("summary", "compile_s", "step_time_compiled_over_eager")}, indent=1))
    if args.out:
        write_json(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
