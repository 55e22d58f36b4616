"""``dartsfast bench``: run the suites, compare against a baseline, keep baselines and history.

    dartsfast bench run --suite quick --out new.json [--history]
    dartsfast bench compare benchmarks/baselines new.json      # exit 1 only on a significant regression
    dartsfast bench update-baseline [RUN.json ...]  # default: 8 quick runs → benchmarks/baselines/<class>.json
    dartsfast bench history --name weighted_sum/forward --out ws.png
    dartsfast bench ops [--check]                   # exact op/sync counts of a search step (dartsfast.cli.bench_ops)
    dartsfast bench ab --base origin/main           # base vs head side by side (dartsfast.cli.bench_ab)
    dartsfast bench accept --reason TEXT            # move the CI gate's base commit forward

Exit status: 0 fine; 1 a significant regression (compare) or a benchmark that failed to run
(run, update-baseline); 2 bad input (missing or malformed file, unknown benchmark, ...),
through dartsfast.cli.
"""
from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from dartsfast._io import write_json
from dartsfast.bench import stats as bench_stats
from dartsfast.bench.baselines import BASELINE_RUNS, DEFAULT_BASELINES, baseline_file, merge_runs
from dartsfast.bench.export import to_pytest_benchmark
from dartsfast.bench.history import DEFAULT_HISTORY, append_history, plot_history, read_history
from dartsfast.bench.runner import ROUNDS, run_suite
from dartsfast.cli import bench_ab, bench_ops
from dartsfast.cli._argtypes import fraction, name_list, positive_float, positive_int
from dartsfast.records import load_document, write_document
from dartsfast.rundir import check_output_file


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", choices=("quick", "full"), default="quick",
                   help="quick: CPU/CI, ~15 s on 2 cores; full: GPU sizes")
    p.add_argument("--device", default=None, help="cpu or cuda[:i] (default: cpu for quick, cuda for full)")
    p.add_argument("--only", type=name_list, default=[], help="comma-separated benchmark names (default: all)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default 1 on CPU: see README)")
    p.add_argument("--rounds", type=positive_int, default=None, help="rounds over the suite per run (default 3)")
    p.add_argument("--pairs-scale", type=positive_float, default=1.0, help="scale every benchmark's pair count")
    p.add_argument("--max-seconds", type=positive_float, default=math.inf,
                   help="time budget: rounds not started by then are dropped")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="benchmark suites, baselines and regression checks (CI)",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="bench_command", required=True, metavar="SUBCOMMAND")

    r = sub.add_parser("run", help="time a suite; write the records (JSON)")
    _add_run_options(r)
    r.add_argument("--out", type=Path, default=None, help="result file (JSON, written atomically)")
    r.add_argument("--history", nargs="?", const=DEFAULT_HISTORY, default=None, metavar="PATH",
                   help=f"append this run to a JSON-lines history (default path {DEFAULT_HISTORY})")
    r.add_argument("--keep-samples", action="store_true", help="store every timed call in the records")
    r.add_argument("--format", choices=("dartsfast", "pytest-benchmark"), default="dartsfast",
                   help="--out layout: dartsfast records (default; what compare reads) or pytest-benchmark's JSON "
                        "(github-action-benchmark, Bencher, CodSpeed importers)")
    r.set_defaults(handler=_run)

    c = sub.add_parser("compare", help="BASE vs NEW: table of changes; exit 1 on a significant regression")
    c.add_argument("base", type=Path, help="baseline result file, or a directory of <device-class>.json baselines")
    c.add_argument("new", type=Path, help="result file of `bench run`")
    c.add_argument("--max-regression", type=fraction, default=bench_stats.DEFAULT_MAX_REGRESSION,
                   help="smallest slowdown that fails (fraction; default 0.10); noisier benchmarks need more")
    c.add_argument("--allow-no-baseline", action="store_true",
                   help="with a BASE directory that has no baseline for NEW's device class: say so and pass "
                        "(default: exit 2, the gate never passes on nothing)")
    c.add_argument("--require-baseline", action="store_true", help=argparse.SUPPRESS)  # the default since issue 19
    _add_allow_options(c)
    c.add_argument("--json", type=Path, default=None, help="also write the verdicts as JSON")
    c.set_defaults(handler=_compare)

    u = sub.add_parser("update-baseline", help="write benchmarks/baselines/<device-class>.json from runs")
    u.add_argument("runs", nargs="*", type=Path, help="result files to merge (default: run the suite --runs times)")
    _add_run_options(u)
    u.add_argument("--runs", dest="n_runs", type=positive_int, default=BASELINE_RUNS,
                   help=f"runs of the suite when no files are given (default {BASELINE_RUNS})")
    u.add_argument("--dir", type=Path, default=Path(DEFAULT_BASELINES), help="baseline directory")
    u.add_argument("--out", type=Path, default=None, help="write here instead of DIR/<device-class>.json")
    u.set_defaults(handler=_update_baseline)

    h = sub.add_parser("history", help="plot one benchmark over the runs of a history file (PNG)")
    h.add_argument("--name", required=True, help="benchmark name, e.g. weighted_sum/forward")
    h.add_argument("--history", type=Path, default=Path(DEFAULT_HISTORY), help="JSON-lines history file")
    h.add_argument("--out", type=Path, required=True, help="PNG to write")
    h.add_argument("--device-class", default=None, help="only this device class (default: all, one line each)")
    h.set_defaults(handler=_history)
    bench_ops.add_subparser(sub)
    bench_ab.add_subparsers(sub)
    return p


def _add_allow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-missing", action="store_true",
                   help="pass although benchmarks of BASE are missing from NEW (default: exit 2 naming them)")
    p.add_argument("--allow-errors", action="store_true",
                   help="pass although benchmarks errored or were skipped (default: exit 2 naming them)")
    p.add_argument("--allow-incomparable", action="store_true",
                   help="pass although BASE is another suite or benchmarks are not comparable (default: exit 2)")


def _allowed(args) -> dict:
    return dict(allow_missing=args.allow_missing, allow_errors=args.allow_errors,
                allow_incomparable=args.allow_incomparable)


def _suite_run(args, log=print) -> dict:
    device = args.device or ("cuda" if args.suite == "full" else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is visible"
                         + (" (the full suite is for GPUs; use --suite quick on a CPU)"
                            if args.suite == "full" else ""))
    try:
        torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"--device {device!r}: {exc}") from None
    return run_suite(args.suite, device=device, names=args.only, threads=args.threads,
                     max_seconds=args.max_seconds, pairs_scale=args.pairs_scale,
                     rounds=args.rounds or ROUNDS, keep_samples=getattr(args, "keep_samples", False), log=log)


def _failed(doc: dict) -> list[str]:
    return [f"{r['name']}: {r['error']}" for r in doc["records"] if r["status"] == "error"]


def _run(args) -> int:
    if args.out is not None:
        check_output_file(args.out, "--out")
    if args.format == "pytest-benchmark":
        args.keep_samples = True
    doc = _suite_run(args)
    if args.out is not None and args.format == "pytest-benchmark":
        write_json(str(args.out), to_pytest_benchmark(doc))
    elif args.out is not None:
        write_document(args.out, doc)
    if args.history:
        append_history(args.history, doc)
    where = f"; records in {args.out}" if args.out else ""
    print(f"bench run: suite {doc['suite']}, device class {doc['device_class']}, {len(doc['records'])} "
          f"benchmarks in {doc['seconds']:.1f} s{where}")
    failed = _failed(doc)
    for line in failed:
        print(f"bench run: FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def _compare(args) -> int:
    if args.json is not None:
        check_output_file(args.json, "--json")
    new = load_document(args.new, kind="bench")
    base_path = args.base
    if base_path.is_dir():
        base_path = baseline_file(base_path, new, args.new)
        if not base_path.exists():
            message = (f"no baseline for device class {base_path.stem} in {args.base} "
                       f"(make one with `dartsfast bench update-baseline`)")
            if not args.allow_no_baseline:
                raise FileNotFoundError(message + "; --allow-no-baseline passes without one, "
                                        "`dartsfast bench ab` needs none")
            print(f"bench compare: {message}; nothing compared (--allow-no-baseline)")
            return 0
    base = load_document(base_path, kind="bench")
    rows = bench_stats.compare(base, new, args.max_regression)
    print(f"bench compare: {base_path} (base) vs {args.new} (new); change = new/base − 1 of the calibrated "
          f"ratio; threshold = max({args.max_regression:g}, {bench_stats.K_SIGMA:g} × noise)\n")
    print(bench_stats.format_table(rows))
    print("\n" + bench_stats.summary(rows))
    problems = bench_stats.gate_problems(base, new, rows, **_allowed(args))
    for line in problems:
        print(f"bench compare: CANNOT PASS: {line}", file=sys.stderr)
    if args.json is not None:
        write_json(str(args.json), {"base": str(base_path), "new": str(args.new), "max_regression": args.max_regression,
                                    "regression": bench_stats.has_regression(rows), "problems": problems,
                                    "rows": [{"benchmark": r.label, "device_class": r.device_class,
                                              "verdict": r.verdict, "base": r.base, "new": r.new, "change": r.change,
                                              "threshold": r.threshold, "kind": r.kind, "note": r.note} for r in rows]})
    return 2 if problems else 1 if bench_stats.has_regression(rows) else 0


def _fresh_runs(args) -> list[dict]:
    """``--runs`` runs of the suite, each in a fresh process: the baseline's run-to-run sd must
    include what differs between processes (memory layout, which core), as CI's run will."""
    forwarded = ["--suite", args.suite, "--pairs-scale", str(args.pairs_scale)]
    for flag, value in (("--device", args.device), ("--threads", args.threads), ("--rounds", args.rounds),
                        ("--only", ",".join(args.only))):
        if value:
            forwarded += [flag, str(value)]
    if math.isfinite(args.max_seconds):
        forwarded += ["--max-seconds", str(args.max_seconds)]
    docs = []
    with tempfile.TemporaryDirectory(prefix="dartsfast-baseline-") as tmp:
        for i in range(args.n_runs):
            out = Path(tmp) / f"run{i}.json"
            print(f"update-baseline: run {i + 1}/{args.n_runs}", flush=True)
            proc = subprocess.run([sys.executable, "-m", "dartsfast", "bench", "run", *forwarded, "--out", str(out)],
                                  capture_output=True, text=True)
            if not out.exists():
                raise ValueError(f"run {i + 1} wrote no results (exit {proc.returncode}): "
                                 f"{(proc.stderr or proc.stdout).strip()[-500:]}")
            docs.append(load_document(out, kind="bench"))
    return docs


def _update_baseline(args) -> int:
    docs = [load_document(p, kind="bench") for p in args.runs] if args.runs else _fresh_runs(args)
    failed = [f for d in docs for f in _failed(d)]
    baseline = merge_runs(docs)
    out = args.out or args.dir / f"{baseline['device_class']}.json"
    check_output_file(out, "--out")
    baseline = write_document(out, baseline)
    print(f"update-baseline: {out} ← {len(docs)} run(s), {len(baseline['records'])} benchmarks "
          f"(device class {baseline['device_class']})")
    for rec in baseline["records"]:
        ratio = rec.get("ratio") or {}
        if rec.get("status") == "ok" and ratio:
            sd = ratio.get("run_rel_sd")
            print(f"  {rec['name']:32s} ratio {ratio['value']:9.3f}  run-to-run sd "
                  + ("–" if sd is None else f"{100 * sd:.1f}%"))
        else:
            print(f"  {rec['name']:32s} {rec.get('status')}: {rec.get('error', '')}")
    for line in failed:
        print(f"update-baseline: FAILED {line}", file=sys.stderr)
    return 1 if failed else 0


def _history(args) -> int:
    entries = read_history(args.history)
    check_output_file(args.out, "--out")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    points = plot_history(entries, args.name, args.out, args.device_class)
    print(f"bench history: {points} point(s) of {args.name} from {len(entries)} run(s) → {args.out}")
    return 0
