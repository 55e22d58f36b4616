"""How well the regression gate works on this machine: false alarms on unchanged code and
detection of a planted slowdown, each over many fresh-process runs of ``dartsfast bench run``.

These are the figures the README quotes for the gate. They are wall-clock measurements, so
they live here and not in the default test suite (issue 11: a unit test that expected a
planted 20% slowdown to be flagged failed on a busy runner, where the gate rightly widened
its threshold). Not named bench_*.py: gpu_suite.sh runs every such script in a GPU slot, and
this one measures the CPU gate for ~12 minutes.

    python benchmarks/gate_rates.py --runs 10 --out benchmarks/results/gate/gate_rates.json
    python benchmarks/gate_rates.py --runs 10 --busy 1 ...   # with one core kept busy
    # bench ab's verdicts on synthetic timings of measured noise (no timing: seconds):
    python benchmarks/gate_rates.py --synthetic AB_REPORT.json [GATE_RATES.json ...] --out FILE.json

Runs alternate (unchanged, planted, unchanged, ...) so a drift in the machine's speed falls on
both kinds alike. Each run is compared with BASE: the committed baseline of this device class
(``benchmarks/baselines``, as CI does) or, with ``--base run`` or when there is none, one
extra unchanged run made first (a single-run base: run-to-run noise unknown, as in
``dartsfast bench compare A.json B.json``).
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # benchmark this checkout even without `pip install -e .`
    sys.path.insert(0, str(REPO))

from dartsfast._io import atomic_write, write_json  # noqa: E402
from dartsfast.bench import stats as bench_stats  # noqa: E402
from dartsfast.bench.runner import PLANT_ENV, parse_plant  # noqa: E402
from dartsfast.bench.suites import suite  # noqa: E402
from dartsfast.records import load_document  # noqa: E402
from dartsfast.timing import environment_info  # noqa: E402

BASELINES = REPO / "benchmarks" / "baselines"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10, help="unchanged runs and as many planted runs (default 10)")
    p.add_argument("--plant", default="dwconv_se/forward:0.2", help="NAME:FRACTION planted in half the runs")
    p.add_argument("--suite", default="quick", choices=("quick", "full"))
    p.add_argument("--only", default=None, help="comma-separated benchmarks (default: the whole suite)")
    p.add_argument("--pairs-scale", type=float, default=1.0, help="forwarded to bench run")
    p.add_argument("--base", default="baseline", choices=("baseline", "run"),
                   help="compare with the committed baseline of this device class, or with a first unchanged run")
    p.add_argument("--busy", type=int, default=0, help="keep this many cores busy with spin loops meanwhile")
    p.add_argument("--max-regression", type=float, default=bench_stats.DEFAULT_MAX_REGRESSION)
    p.add_argument("--out", type=Path, default=None, help="write the runs and the summary here (JSON, + .md)")
    p.add_argument("--synthetic", nargs="+", type=Path, default=None, metavar="FILE",
                   help="no timing: bench ab's rates on values resampled from the per-process noise measured in "
                        "these files (bench ab reports, gate_rates results); see benchmarks/gate_synthetic.py")
    p.add_argument("--sets", type=int, default=200, help="--synthetic: sets of --runs runs (default 200)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs must be ≥ 1, got {args.runs}")
    if args.busy < 0:
        p.error(f"--busy must be ≥ 0, got {args.busy}")
    names = [s.name for s in suite(args.suite)]
    try:
        args.plant_map = parse_plant(args.plant, names)
    except ValueError as exc:
        p.error(str(exc))
    if args.only:
        missing = set(args.plant_map) - set(args.only.split(","))
        if missing:
            p.error(f"--plant names {', '.join(sorted(missing))}, which --only leaves out")
    if args.out is not None and args.out.is_dir():
        p.error(f"--out {args.out} is a directory; give a file name")
    return args


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_cores(n: int):
    """``n`` processes spinning until the block ends: a neighbour job on a shared runner."""
    procs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(n)]
    for proc in procs:
        proc.start()
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.join()


def bench_run(args, out: Path, plant: str | None) -> dict:
    """One ``dartsfast bench run`` in a fresh process (as CI runs it)."""
    cmd = [sys.executable, "-m", "dartsfast", "bench", "run", "--suite", args.suite,
           "--pairs-scale", str(args.pairs_scale), "--out", str(out)]
    if args.only:
        cmd += ["--only", args.only]
    env = {k: v for k, v in os.environ.items() if k != PLANT_ENV}
    if plant:
        env[PLANT_ENV] = plant
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if not out.exists():
        raise RuntimeError(f"bench run wrote no results (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return load_document(out, kind="bench")


def verdicts(base: dict, new: dict, max_regression: float) -> dict:
    rows = bench_stats.compare(base, new, max_regression)
    return {r.label.split(" ")[0]: {"verdict": r.verdict, "change": r.change, "threshold": r.threshold}
            for r in rows}


def summarise(runs: list[dict], planted: dict) -> dict:
    """Counts per kind of run: runs with any regression flagged, and per planted benchmark
    how often it was flagged and the range of its measured change."""
    unchanged = [r for r in runs if not r["planted"]]
    with_plant = [r for r in runs if r["planted"]]

    def flagged(run, names=None):
        return [n for n, v in run["rows"].items() if v["verdict"] == "regression" and (names is None or n in names)]

    out = {"unchanged_runs": len(unchanged),
           "false_alarm_runs": sum(bool(flagged(r)) for r in unchanged),
           "false_alarms": sorted({n for r in unchanged for n in flagged(r)}),
           "planted_runs": len(with_plant), "planted": {}}
    for name, fraction in planted.items():
        changes = [r["rows"][name]["change"] for r in with_plant if r["rows"][name]["change"] is not None]
        thresholds = [r["rows"][name]["threshold"] for r in with_plant if r["rows"][name]["threshold"] is not None]
        out["planted"][name] = {
            "fraction": fraction, "detected": sum(bool(flagged(r, {name})) for r in with_plant),
            "change_min": min(changes, default=None), "change_max": max(changes, default=None),
            "threshold_min": min(thresholds, default=None), "threshold_max": max(thresholds, default=None)}
    out["false_alarms_in_planted_runs"] = sorted({n for r in with_plant for n in flagged(r) if n not in planted})
    return out


def markdown(summary: dict, env: dict, args) -> str:
    lines = [f"## gate_rates on {env.get('cpu_model') or env.get('device_name')} "
             f"({summary['unchanged_runs']} unchanged + {summary['planted_runs']} planted runs, "
             f"base: {args.base}, busy cores: {args.busy})", "",
             f"- unchanged code: {summary['false_alarm_runs']} of {summary['unchanged_runs']} runs flagged"
             + (f" ({', '.join(summary['false_alarms'])})" if summary["false_alarms"] else "")]
    for name, s in summary["planted"].items():
        pct = lambda x: "–" if x is None else f"{100 * x:+.1f}%"  # noqa: E731
        lines.append(f"- planted {100 * s['fraction']:.0f}% in {name}: flagged in {s['detected']} of "
                     f"{summary['planted_runs']} runs; measured change {pct(s['change_min'])} to "
                     f"{pct(s['change_max'])}, threshold {pct(s['threshold_min'])} to {pct(s['threshold_max'])}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.synthetic:
        import gate_synthetic  # beside this script
        return gate_synthetic.main(args)
    runs: list[dict] = []
    env = environment_info("cpu")
    with tempfile.TemporaryDirectory(prefix="dartsfast-gate-") as tmp, busy_cores(args.busy):
        tmp = Path(tmp)
        base = None
        if args.base == "baseline":
            first = bench_run(args, tmp / "probe.json", None)  # also the first unchanged run
            path = BASELINES / f"{first['device_class']}.json"
            if path.exists():
                base = load_document(path, kind="bench")
                runs.append({"planted": {}, "rows": verdicts(base, first, args.max_regression)})
            else:
                print(f"gate_rates: no baseline for {first['device_class']}; the first run is the base")
                args.base, base = "run", first
        else:
            base = bench_run(args, tmp / "base.json", None)
        while len(runs) < 2 * args.runs:
            plant = len([r for r in runs if not r["planted"]]) > len([r for r in runs if r["planted"]])
            new = bench_run(args, tmp / f"run{len(runs)}.json", args.plant if plant else None)
            run = {"planted": args.plant_map if plant else {}, "rows": verdicts(base, new, args.max_regression)}
            runs.append(run)
            flagged = [n for n, v in run["rows"].items() if v["verdict"] == "regression"]
            print(f"gate_rates: run {len(runs)}/{2 * args.runs} {'planted' if plant else 'unchanged'}: "
                  f"{'flagged ' + ', '.join(flagged) if flagged else 'nothing flagged'}", flush=True)
    summary = summarise(runs, args.plant_map)
    report = markdown(summary, env, args)
    print(report)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(str(args.out), {"config": {k: v for k, v in vars(args).items() if k not in ("out", "plant_map")},
                                   "environment": env, "summary": summary, "runs": runs})
        atomic_write(str(args.out.with_suffix(".md")), lambda f: f.write(report.encode()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
