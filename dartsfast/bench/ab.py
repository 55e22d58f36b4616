"""``dartsfast bench ab``: the suite of two commits timed side by side in one job.

The base commit is checked out into a temporary ``git worktree`` (under the system's
temporary directory, removed afterwards — also on Ctrl-C, SIGTERM or an exception — and
``git worktree prune``-d). Nothing is installed: each timing process imports dartsfast
from its tree, put first on ``sys.path`` (the quick suite needs no compiled extension;
the full suite's GPU kernels are Triton, which compiles from the tree's sources). Processes
alternate A B B A per round, each a fresh ``dartsfast bench run`` of one tree, and the
verdicts come from :mod:`dartsfast.bench.ab_stats`. A benchmark slower than 3/4 of the
minimum effect but within its run's noise is neither passed nor failed on that: it gets more
rounds of its own (``--only`` it), two at a time until decided or the cap, each verdict from
all its processes.

``DARTSFAST_BENCH_PLANT_SLOWDOWN`` (:mod:`dartsfast.bench.runner`) reaches the head's
processes only, so the gate can be checked end to end: base code, planted head.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

from dartsfast.bench import ab_stats
from dartsfast.bench.baselines import describe_key, record_key
from dartsfast.bench.runner import PLANT_ENV

WORKTREE = "worktree"  # --head: the working tree as it is, uncommitted changes included
# Undecided benchmarks get up to this many more A B B A rounds, ESCALATE_STEP at a time, until
# each is decided: 4 → 8 processes a side shrinks the threshold ~2x (sqrt(1/n) and a tighter
# upper bound of the spread: df 4 → 12), 16 a side another ~1.5x. The first real 10% plants
# missed (2026-12-01) at +12.2% under 17.1% (one noisy process) and at +11.2% under 14.4%
# after 8 a side (3.9% spread in a noisy stretch); on synthetic runs of 3% noise a cap of
# 2 rounds flags 0.77 of 10% slowdowns, 6 rounds 0.93, 8 no more (6% trigger; with 2% of
# processes in a burst and ab_stats.undecided's 4.5% trigger, 6 rounds: 0.96).
ESCALATE_ROUNDS = 6
ESCALATE_STEP = 2
CHILD_TIMEOUT_S = 1200  # one `bench run` of the quick suite takes ~20 s; a hang guard, not a speed bound
# A child imports dartsfast from the tree given first, and refuses to run another copy (an
# installed dartsfast would otherwise time the wrong code without a word).
CHILD = r"""
import os, runpy, sys
tree = os.path.realpath(sys.argv[1])
sys.path.insert(0, tree)
import dartsfast
where = os.path.realpath(dartsfast.__file__)
if not where.startswith(tree + os.sep):
    sys.exit(f"bench ab: imported dartsfast from {where}, not from the tree {tree}")
sys.argv = ["dartsfast", *sys.argv[2:]]
runpy.run_module("dartsfast", run_name="__main__", alter_sys=True)
"""


class ABError(ValueError):
    """Bad input or a run that cannot be compared (exit 2)."""


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ABError(f"git {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout.strip()


def repo_root(start: Path | str = ".") -> Path:
    try:
        return Path(git(Path(start), "rev-parse", "--show-toplevel"))
    except ABError as exc:
        raise ABError(f"bench ab compares commits of a git repository; {start} is not in one ({exc})") from None


def resolve(repo: Path, ref: str) -> str:
    """The commit ``ref`` names (ABError naming it if none)."""
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except ABError:
        raise ABError(f"--base/--head {ref!r}: not a commit of {repo} (fetch it first, e.g. "
                      f"`git fetch origin main`; a shallow clone needs `fetch-depth: 0`)") from None


def read_base_ref(path: Path) -> str:
    """The commit recorded in a base-ref file (first line that is not a comment)."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines()]
    except OSError as exc:
        raise ABError(f"--base-file {path}: {exc.strerror or exc}") from None
    refs = [ln for ln in lines if ln and not ln.startswith("#")]
    if not refs:
        raise ABError(f"--base-file {path}: no commit in it (expected a line with a commit hash)")
    return refs[0].split()[0]


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a CI job cancelled) raises KeyboardInterrupt, so ``finally`` blocks clean up."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def worktree(repo: Path, commit: str, log: Callable[[str], None] = lambda s: None):
    """A detached checkout of ``commit`` in a temporary directory, removed on exit whatever happens."""
    parent = Path(tempfile.mkdtemp(prefix="dartsfast-ab-"))
    path = parent / commit[:12]
    try:
        with _terminate_as_interrupt():
            git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
            log(f"bench ab: {commit[:12]} checked out in {path}")
            yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)], capture_output=True)
        shutil.rmtree(parent, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


def run_tree(tree: Path, out: Path, suite: str, *, pairs_scale: float = 1.0, only: tuple = (),
             plant: str | None = None, python: str = sys.executable) -> tuple[dict | None, str]:
    """One ``bench run`` of ``tree`` in a fresh process: (its document or None, what went wrong)."""
    cmd = [python, "-c", CHILD, str(tree), "bench", "run", "--suite", suite, "--out", str(out)]
    if pairs_scale != 1.0:
        cmd += ["--pairs-scale", repr(pairs_scale)]
    if only:
        cmd += ["--only", ",".join(only)]
    env = {k: v for k, v in os.environ.items() if k not in (PLANT_ENV, "PYTHONPATH")}
    if plant:
        env[PLANT_ENV] = plant
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"bench run hung for {CHILD_TIMEOUT_S} s"
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    if not out.exists():
        return None, f"exit {proc.returncode}: " + " | ".join(tail)
    try:
        return json.loads(out.read_text()), ""
    except ValueError as exc:
        return None, f"unreadable result {out}: {exc}"


def schedule(rounds: int) -> list[str]:
    """A B B A per round: each side equally often first and last, linear drift cancels."""
    return ["base", "head", "head", "base"] * rounds


def _values(docs: list[dict]) -> tuple[dict, dict]:
    """Per benchmark key: its calibrated ratios over the processes, and its records."""
    values, recs = defaultdict(list), defaultdict(list)
    for doc in docs:
        for rec in doc.get("records", []):
            key = record_key(rec)
            recs[key].append(rec)
            ratio = rec.get("ratio")
            if rec.get("status") == "ok" and isinstance(ratio, dict) and ratio.get("value"):
                values[key].append(float(ratio["value"]))
    return values, recs


def _row(key, base_recs, head_recs, base_vals, head_vals, min_effect, k, base_label) -> dict:
    row = {"benchmark": describe_key(key), "name": key[0], "base": None, "head": None, "change": None,
           "ci": None, "threshold": None, "spread": None, "n_base": len(base_vals), "n_head": len(head_vals),
           "base_values": base_vals, "head_values": head_vals, "note": ""}
    if not base_recs:
        return {**row, "verdict": "new", "note": f"not in base {base_label} (older than this benchmark): not compared"}
    if not head_recs:
        return {**row, "verdict": "missing", "note": "in base, not in head"}
    errors = [f"{side}: {r.get('error') or r.get('status')}"
              for side, recs in (("base", base_recs), ("head", head_recs)) for r in recs if r.get("status") != "ok"]
    if errors:
        return {**row, "verdict": "error", "note": "; ".join(sorted(set(errors)))[:160]}
    units = {json.dumps((r.get("calibration") or {}).get("units")) for r in base_recs + head_recs}
    if len(units) > 1:
        return {**row, "verdict": "not comparable", "note": f"calibration units differ: {', '.join(sorted(units))}"}
    if len(base_vals) < 2 or len(head_vals) < 2:
        return {**row, "verdict": "error", "note": "fewer than 2 measured processes on a side"}
    j = ab_stats.judge(base_vals, head_vals, min_effect=min_effect, k=k)
    planted = max((r.get("planted_slowdown") or 0.0) for r in head_recs)
    return {**row, "verdict": j.verdict, "base": j.base, "head": j.head, "change": j.change, "ci": j.ci,
            "threshold": j.threshold, "spread": j.spread,
            "note": f"planted {100 * planted:g}% in head" if planted else ""}


def verdict_rows(base_docs: list[dict], head_docs: list[dict], *, min_effect: float = ab_stats.DEFAULT_MIN_EFFECT,
                 k: float = ab_stats.K_SIGMA, base_label: str = "") -> list[dict]:
    """One row per benchmark in either side's runs."""
    (bv, br), (hv, hr) = _values(base_docs), _values(head_docs)
    keys = list(dict.fromkeys([*hr, *br]))
    return [_row(key, br.get(key, []), hr.get(key, []), bv.get(key, []), hv.get(key, []), min_effect, k, base_label)
            for key in keys]


def problems(rows: list[dict], *, allow_missing=False, allow_errors=False, allow_incomparable=False) -> list[str]:
    """Why the gate cannot pass (exit 2): as :func:`dartsfast.bench.stats.gate_problems`."""
    out = []
    for verdicts, allowed, what in ((("missing",), allow_missing, "missing from head (--allow-missing)"),
                                    (("error",), allow_errors, "not measured (--allow-errors)"),
                                    (("not comparable",), allow_incomparable, "not comparable (--allow-incomparable)")):
        bad = [f"{r['name']} ({r['note']})" for r in rows if r["verdict"] in verdicts]
        if bad and not allowed:
            out.append(f"{what}: {'; '.join(bad)}")
    if not any(r["verdict"] in ab_stats.COMPARED for r in rows):
        out.append("no benchmark was compared")
    return out


def run_ab(repo: Path, base_ref: str, head_ref: str = WORKTREE, *, suite: str = "quick", rounds: int = 2,
           pairs_scale: float = 1.0, only: tuple = (), min_effect: float = ab_stats.DEFAULT_MIN_EFFECT,
           k: float = ab_stats.K_SIGMA, allow: dict | None = None, escalate_rounds: int = ESCALATE_ROUNDS,
           log: Callable[[str], None] = print, run: Callable = run_tree) -> dict:
    """Check out, time A B B A ``rounds`` times, judge; then, while some are undecided
    (:func:`ab_stats.undecided`) and at most ``escalate_rounds`` in all, ``ESCALATE_STEP`` more
    rounds of those only, each judged on all its processes. The report (``exit``: 0, 1 or 2)."""
    if not 1 <= rounds <= 50:
        raise ABError(f"--rounds must be in [1, 50], got {rounds}")
    if not 0 <= escalate_rounds <= 50:
        raise ABError(f"--escalate-rounds must be in [0, 50], got {escalate_rounds}")
    started = time.monotonic()
    base = {"ref": base_ref, "commit": resolve(repo, base_ref)}
    if head_ref == WORKTREE:
        head = {"ref": WORKTREE, "commit": resolve(repo, "HEAD"),
                "dirty": bool(git(repo, "status", "--porcelain", "--untracked-files=no"))}
    else:
        head = {"ref": head_ref, "commit": resolve(repo, head_ref), "dirty": False}
    plant = os.environ.get(PLANT_ENV) or None
    docs = {"base": [], "head": []}
    runs = []
    escalation: list[dict] = []  # one entry per step: the undecided benchmarks and its rounds
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="dartsfast-ab-out-") as tmp:
        stack.enter_context(_terminate_as_interrupt())
        trees = {"base": stack.enter_context(worktree(repo, base["commit"], log)),
                 "head": repo if head_ref == WORKTREE else stack.enter_context(worktree(repo, head["commit"], log))}

        def time_rounds(n: int, names: tuple) -> None:
            total = len(runs) + 4 * n
            for side in schedule(n):
                i, t0 = len(runs), time.monotonic()
                doc, error = run(trees[side], Path(tmp) / f"{i:03d}-{side}.json", suite, pairs_scale=pairs_scale,
                                 only=names, plant=plant if side == "head" else None)
                runs.append({"index": i, "side": side, "seconds": round(time.monotonic() - t0, 1), "error": error,
                             "only": list(names)})
                log(f"bench ab: process {i + 1}/{total} ({side}) "
                    + (f"FAILED: {error}" if error else f"{runs[-1]['seconds']:.0f} s"))
                if doc is None:
                    if not docs[side]:  # its first process failed: this tree cannot run the suite at all
                        raise ABError(f"{side} {base_ref if side == 'base' else head['ref']} ({trees[side]}): "
                                      f"`dartsfast bench run --suite {suite}` failed: {error}")
                    continue
                docs[side].append(doc)

        time_rounds(rounds, only)
        rows = verdict_rows(docs["base"], docs["head"], min_effect=min_effect, k=k, base_label=base_ref)
        spent = 0
        while spent < escalate_rounds:
            names = list(dict.fromkeys(r["name"] for r in rows if ab_stats.undecided(r, min_effect)))
            if not names:
                break
            step = min(ESCALATE_STEP, escalate_rounds - spent)
            trigger = 100 * ab_stats.UNDECIDED_FRACTION * min_effect
            log(f"bench ab: {', '.join(names)}: slower by more than {trigger:g}% but within the noise; "
                f"{step} more round(s) of {'it' if len(names) == 1 else 'them'}")
            time_rounds(step, tuple(names))
            spent += step
            escalation.append({"names": names, "rounds": step})
            rows = verdict_rows(docs["base"], docs["head"], min_effect=min_effect, k=k, base_label=base_ref)
    found = problems(rows, **(allow or {}))
    regression = any(r["verdict"] == "regression" for r in rows)
    code = 2 if found else 1 if regression else 0
    outcome = ("CANNOT COMPARE" if found else "REGRESSION: " + ", ".join(r["name"] for r in rows
                                                                          if r["verdict"] == "regression")
               if regression else "no significant regression")
    classes = sorted({d.get("device_class", "?") for d in docs["base"] + docs["head"]})
    return {"schema": "dartsfast.bench_ab/1", "kind": "bench_ab", "suite": suite, "rounds": rounds,
            "escalate_rounds": escalate_rounds, "escalation": escalation,
            "escalated": list(dict.fromkeys(n for step in escalation for n in step["names"])),
            "processes": len(runs), "pairs_scale": pairs_scale, "base": base, "head": head, "planted": plant or "",
            "min_effect": min_effect, "k_sigma": k, "device_class": ", ".join(classes),
            "environment": (docs["head"] or docs["base"] or [{}])[0].get("environment", {}),
            "seconds": round(time.monotonic() - started, 1), "rows": rows, "problems": found,
            "regression": regression, "exit": code, "outcome": outcome, "runs": runs}
