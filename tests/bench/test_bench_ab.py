"""`dartsfast bench ab` (issue 19): verdict statistics on synthetic timings of known noise,
exit codes on synthetic runs, a real older commit of this repository checked out, run and
cleaned up (also when interrupted), and CLI errors (exit 2). No assertion depends on how
fast this machine is: the real runs are checked for what ran, never for a verdict."""
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from dartsfast.bench import ab, ab_stats
from dartsfast.cli import EXIT_USAGE, main
from dartsfast.testing import SUBPROCESS_TIMEOUT_S

REPO = Path(__file__).resolve().parents[2]
# A commit of this repository from before `bench ab` existed (it has `bench run`).
OLD_COMMIT = "ac46de1"
NAMES = ("weighted_sum/forward", "dwconv_se/forward", "search_step/forward+backward")


def _has_commit(ref):
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{ref}^{{commit}}"],
                          capture_output=True).returncode == 0


needs_history = pytest.mark.skipif(not _has_commit(OLD_COMMIT), reason=f"{OLD_COMMIT} not in this clone (shallow?)")


# ----------------------------------------------------------------------------- statistics

def test_judge_against_an_independent_computation():
    base, head = [1.00, 1.02, 0.96, 1.01], [1.10, 1.12, 1.16, 1.11]
    j = ab_stats.judge(base, head, bootstrap=False)
    lb, lh = [math.log(v) for v in base], [math.log(v) for v in head]
    # each side without its value farthest from its median (0.96 and 1.16)
    tb, th = [math.log(v) for v in (1.00, 1.02, 1.01)], [math.log(v) for v in (1.10, 1.12, 1.11)]
    pooled = math.sqrt((statistics.variance(tb) * 2 + statistics.variance(th) * 2) / 4)
    upper = pooled * math.sqrt(4 / sps.chi2.ppf(0.10, 4))
    thr = max(math.log(1.06), 4 * upper * math.sqrt(math.pi / 2) * math.sqrt(0.5))
    assert j.spread == pytest.approx(pooled, rel=1e-12)
    assert j.change == pytest.approx(math.exp(statistics.median(lh) - statistics.median(lb)) - 1, rel=1e-12)
    assert j.threshold == pytest.approx(math.exp(thr) - 1, rel=1e-12)
    assert j.verdict == ("regression" if math.log1p(j.change) > thr else "ok")
    assert ab_stats.judge(head, base, bootstrap=False).verdict in ("improvement", "ok")
    with pytest.raises(ValueError, match="≥ 2 processes per side"):
        ab_stats.judge([1.0], [1.0, 1.1])


def _simulate(rng, sigma, slow, n_runs, per_side=4, burst_p=0.05, burst=0.25):
    """Per-process values: lognormal noise ``sigma`` and, with probability ``burst_p``, a
    process hit by a burst of load (``burst`` slower), as seen on a shared 2-core runner."""
    shape = (n_runs, per_side)

    def side(scale):
        bursts = 1 + burst * (rng.random(shape) < burst_p)
        return scale * np.exp(rng.normal(0, sigma, shape)) * bursts

    return side(1.0), side(1.0 + slow)


@pytest.mark.parametrize("sigma, burst_p, min10, min20", [
    (0.003, 0.0, 0.99, 1.0), (0.01, 0.0, 0.99, 1.0),      # quiet machine, run-to-run noise of the quick suite
    (0.003, 0.02, 0.97, 0.99), (0.01, 0.02, 0.97, 0.99),  # 2% of processes hit by a 25% burst of load
    (0.02, 0.02, 0.60, 0.97),                             # twice the noisiest benchmark: 10% not reliably seen
])
def test_false_alarm_and_detection_rates_on_known_noise(sigma, burst_p, min10, min20):
    """The issue's targets as rates on synthetic timings of known noise, 4 processes a side
    (the default 2 rounds): A/A 0 false alarms in 400 runs; a 10% slowdown flagged in ≥ 97–99%
    of runs (≥ 19 of 20 expected) and 20% in ≥ 99% at the quick suite's noise (0.3–1%)."""
    rng = np.random.default_rng(19)
    rates = {}
    for slow in (0.0, 0.10, 0.20):
        base, head = _simulate(rng, sigma, slow, 400, burst_p=burst_p)
        flagged = [ab_stats.judge(b, h, bootstrap=False).verdict == "regression" for b, h in zip(base, head)]
        rates[slow] = sum(flagged) / len(flagged)
    assert rates[0.0] == 0 and rates[0.10] >= min10 and rates[0.20] >= min20, rates


def test_the_bootstrap_interval_covers_the_change():
    rng = np.random.default_rng(3)
    base, head = _simulate(rng, 0.01, 0.10, 1, per_side=8, burst_p=0)
    j = ab_stats.judge(base[0], head[0])
    assert j.ci[0] <= j.change <= j.ci[1] and j.ci[0] > 0.05


# ----------------------------------------------------------------------------- verdicts and exit codes

def _doc(values: dict, errors=(), units=2):
    recs = []
    for name, value in values.items():
        rec = {"name": name, "params": {}, "provider": "torch", "dtype": "float32", "layout": "nchw",
               "status": "error" if name in errors else "ok", "error": "boom" if name in errors else "",
               "calibration": {"units": units}}
        if name not in errors:
            rec["ratio"] = {"value": value}
        recs.append(rec)
    return {"suite": "quick", "device_class": "cpu-test", "records": recs}


def _fake_run(base_names=NAMES, head_names=NAMES, slow=None, errors=(), fail_side=None, seed=0):
    rng = np.random.default_rng(seed)
    seen = {"base": 0, "head": 0}

    def run(tree, out, suite, *, plant=None, **kw):
        side = "base" if tree != REPO else "head"
        seen[side] += 1
        if side == fail_side:
            return None, "exit 2: dartsfast: error: argument bench_command: invalid choice"
        names = base_names if side == "base" else head_names
        values = {n: (1.3 if side == "head" and n == slow else 1.0) * math.exp(rng.normal(0, 0.005))
                  for n in names}
        return _doc(values, errors if side == "head" else ()), ""
    return run


@needs_history
@pytest.mark.parametrize("kw, code, words", [
    ({}, 0, "no significant regression"),
    ({"slow": "dwconv_se/forward"}, 1, "REGRESSION: dwconv_se/forward"),
    ({"base_names": NAMES[:2]}, 0, "no significant regression"),  # an older base lacks a benchmark: "new"
    ({"head_names": NAMES[:2]}, 2, "missing from head (--allow-missing): search_step/forward+backward"),
    ({"errors": ("dwconv_se/forward",)}, 2, "not measured (--allow-errors): dwconv_se/forward (head: boom)"),
    ({"base_names": ("other",)}, 2, "no benchmark was compared"),
])
def test_exit_codes_on_synthetic_runs(tmp_path, monkeypatch, kw, code, words):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    report = ab.run_ab(REPO, OLD_COMMIT, suite="quick", rounds=2, run=_fake_run(**kw), log=lambda s: None)
    text = ab_stats.format_markdown(report)
    assert report["exit"] == code and words in text + " ".join(report["problems"]), text
    assert report["processes"] == 8 and [r["side"] for r in report["runs"][:4]] == ["base", "head", "head", "base"]
    if "base_names" in kw and code == 0:
        row = next(r for r in report["rows"] if r["name"] == "search_step/forward+backward")
        assert row["verdict"] == "new" and f"not in base {OLD_COMMIT}" in row["note"]
    assert not list(tmp_path.glob("dartsfast-ab-*"))


@needs_history
def test_a_base_that_cannot_run_the_suite_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ab.ABError, match=f"base {OLD_COMMIT} .*failed: exit 2: .*invalid choice"):
        ab.run_ab(REPO, OLD_COMMIT, rounds=1, run=_fake_run(fail_side="base"), log=lambda s: None)
    assert not list(tmp_path.glob("dartsfast-ab-*"))


def _escalating_run(head_slow: float, noisy_steps: int, calls: list):
    """A fake ``bench run``: every process's values; dwconv_se/forward ``head_slow`` slower in
    head, with 3% between processes in the first rounds and 6% in the first ``noisy_steps``
    escalation steps (undecided), quiet (0.1%) after them."""
    def noisy(i, a):
        return (1.00, 1 + a, 1 - a, 1.01)[i % 4]

    def run(tree, out, suite, *, only=(), plant=None, **kw):
        side = "base" if tree != REPO else "head"
        calls.append((side, tuple(only)))
        step = 0 if not only else 1 + (sum(1 for _, o in calls if o) - 1) // 8  # 8 processes a step
        quiet = 1.0 + 1e-3 * (len(calls) % 3)
        base_value = noisy(len(calls), 0.03 if step == 0 else 0.06) if step <= noisy_steps else quiet
        slow = base_value * (1 + head_slow if side == "head" else 1.0)
        names = only or NAMES
        return _doc({n: slow if n == "dwconv_se/forward" else 1.0 + 1e-3 * (len(calls) % 3) for n in names}), ""
    return run


@needs_history
@pytest.mark.parametrize("escalate", [6, 0])
def test_an_undecided_slowdown_gets_more_rounds_of_its_own(tmp_path, monkeypatch, escalate):
    """dwconv_se +10% in noisy first rounds (3% between processes): under its threshold, yet
    over 3/4 of the 6% minimum, so undecided; two more rounds of it alone (``--only``), quiet,
    and all its 8 processes a side flag it — no further rounds. Without escalation the noise
    passes it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    first = ab_stats.judge([1.00, 1.03, 0.97, 1.01], [1.10, 1.133, 1.067, 1.111], bootstrap=False)
    assert first.verdict == "ok" and first.change > 0.06  # the premise: undecided after the first rounds
    calls = []
    report = ab.run_ab(REPO, OLD_COMMIT, rounds=2, escalate_rounds=escalate, run=_escalating_run(0.10, 0, calls),
                       log=lambda s: None)
    row = next(r for r in report["rows"] if r["name"] == "dwconv_se/forward")
    if escalate:
        assert [c[1] for c in calls[8:]] == [("dwconv_se/forward",)] * 8 and report["processes"] == 16
        assert report["escalation"] == [{"names": ["dwconv_se/forward"], "rounds": 2}]
        assert report["escalated"] == ["dwconv_se/forward"]
        assert "dwconv_se/forward (2 rounds)" in ab_stats.format_markdown(report)
        assert row["n_base"] == row["n_head"] == 8 and row["verdict"] == "regression" and report["exit"] == 1
        others = [r for r in report["rows"] if r["name"] != "dwconv_se/forward"]
        assert all(r["n_base"] == 4 and r["verdict"] == "ok" for r in others)
    else:
        assert report["processes"] == 8 and report["escalated"] == [] and row["verdict"] == "ok"
        assert report["exit"] == 0
    assert ab_stats.undecided(row) is (not escalate)
    assert not list(tmp_path.glob("dartsfast-ab-*"))


@needs_history
@pytest.mark.parametrize("cap, steps, verdict", [(6, [2, 2], "regression"), (3, [2, 1], "ok")])
def test_escalation_goes_on_while_undecided_up_to_its_cap(tmp_path, monkeypatch, cap, steps, verdict):
    """Still noisy after the first escalation step: another step, until the benchmark is
    decided (cap 6: flagged after the second step, 4 rounds, not all 6) or the cap is spent
    (cap 3: 2 + 1 rounds, still undecided, passed: the report says it was given them)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []
    report = ab.run_ab(REPO, OLD_COMMIT, rounds=2, escalate_rounds=cap,
                       run=_escalating_run(0.10, 1 if verdict == "regression" else 9, calls), log=lambda s: None)
    row = next(r for r in report["rows"] if r["name"] == "dwconv_se/forward")
    assert [s["rounds"] for s in report["escalation"]] == steps
    assert report["processes"] == 8 + 4 * sum(steps) and row["n_head"] == 4 + 2 * sum(steps)
    assert row["verdict"] == verdict and report["exit"] == (verdict == "regression")
    assert f"dwconv_se/forward ({sum(steps)} rounds)" in ab_stats.format_markdown(report)


def test_undecided_needs_a_change_over_three_quarters_of_the_minimum_and_a_noisy_threshold():
    row = {"verdict": "ok", "change": 0.05, "threshold": 0.12}
    assert ab_stats.undecided(row)
    assert not ab_stats.undecided({**row, "change": 0.04})  # under 4.5%
    assert not ab_stats.undecided({**row, "threshold": 0.06})  # the minimum effect, not the noise, set it
    assert not ab_stats.undecided({**row, "verdict": "regression"})
    assert not ab_stats.undecided({"verdict": "new", "change": None, "threshold": None})


def _gate(rng, sigma, slow, burst_p, cap):
    """The gate's decision on synthetic timings, independently of ``run_ab``: judge 4 processes
    a side; while undecided and under ``cap`` rounds, 2 more rounds (4 processes a side)."""
    b, h = _simulate(rng, sigma, slow, 1, burst_p=burst_p)
    b, h = b[0], h[0]
    j, spent = ab_stats.judge(b, h, bootstrap=False), 0
    while spent < cap and j.verdict == "ok" and j.change > 0.045 and j.threshold > 0.0600001:
        b2, h2 = _simulate(rng, sigma, slow, 1, per_side=4, burst_p=burst_p)
        b, h, spent = np.concatenate([b, b2[0]]), np.concatenate([h, h2[0]]), spent + 2
        j = ab_stats.judge(b, h, bootstrap=False)
    return j.verdict == "regression"


@pytest.mark.parametrize("sigma, burst_p", [(0.02, 0.0), (0.02, 0.02), (0.03, 0.02)])
def test_escalation_raises_detection_and_keeps_false_alarms_at_zero(sigma, burst_p):
    """At two to three times the quick suite's usual noise (2-3% between processes; the 10%
    plants' misses of 2026-12-01 had 2.3% and 3.9%), with 2% of processes hit by a 25% burst
    of load, the first 4 processes a side flag a 10% slowdown in ~30-70% of runs; escalation
    (up to 6 rounds) brings it to ≥ 95% (the issue asks 19 of 20), with no A/A false alarm in
    400 runs. (Measured, not met: 4% noise, ~0.8; 2% with 5% bursts, ~0.94.)"""
    rng = np.random.default_rng(190)
    rates = {(slow, cap): np.mean([_gate(rng, sigma, slow, burst_p, cap) for _ in range(400)])
             for cap in (0, ab.ESCALATE_ROUNDS) for slow in (0.0, 0.10, 0.20)}
    assert rates[0.0, ab.ESCALATE_ROUNDS] == 0, rates  # (without escalation 1 in 400 at 3%: a burst on a side)
    assert rates[0.10, ab.ESCALATE_ROUNDS] >= 0.95 and rates[0.20, ab.ESCALATE_ROUNDS] >= 0.99, rates
    assert rates[0.10, ab.ESCALATE_ROUNDS] > rates[0.10, 0], rates


# ----------------------------------------------------------------------------- real worktrees

def _worktrees():
    return subprocess.run(["git", "-C", str(REPO), "worktree", "list", "--porcelain"],
                          capture_output=True, text=True, check=True).stdout


@needs_history
def test_a_real_older_commit_is_checked_out_run_and_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    # No escalation: at 2% of the pairs a chance change over 4.5% would add rounds, and this
    # test is about the checkout, the run and the cleanup, not the verdict.
    report = ab.run_ab(REPO, OLD_COMMIT, rounds=1, only=("weighted_sum/forward",), pairs_scale=0.02,
                       escalate_rounds=0, log=lambda s: None)
    assert report["base"]["commit"].startswith(OLD_COMMIT) and not any(r["error"] for r in report["runs"])
    (row,) = report["rows"]
    assert row["name"] == "weighted_sum/forward" and row["n_base"] == row["n_head"] == 2
    assert report["exit"] in (0, 1) and row["verdict"] in ab_stats.COMPARED  # no claim on the timing itself
    assert not list(tmp_path.glob("dartsfast-ab-*")) and str(tmp_path) not in _worktrees()


@needs_history
@pytest.mark.parametrize("how", ["KeyboardInterrupt", "SIGTERM", "RuntimeError"])
def test_an_interrupted_run_removes_its_worktree(tmp_path, monkeypatch, how):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    calls = []

    def run(tree, out, suite, **kw):
        calls.append(tree)
        assert (tree / "dartsfast" / "bench" / "runner.py").exists()  # the checkout is there while it runs
        if len(calls) == 2:
            if how == "SIGTERM":
                os.kill(os.getpid(), signal.SIGTERM)  # a cancelled CI job
            raise {"KeyboardInterrupt": KeyboardInterrupt, "RuntimeError": RuntimeError}[how]("child raised")
        return _doc({"weighted_sum/forward": 1.0}), ""

    with pytest.raises(KeyboardInterrupt if how != "RuntimeError" else RuntimeError):
        ab.run_ab(REPO, OLD_COMMIT, rounds=1, run=run, log=lambda s: None)
    assert len(calls) == 2 and not calls[0].exists()
    assert not list(tmp_path.glob("dartsfast-ab-*")) and str(tmp_path) not in _worktrees()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or how != "SIGTERM"


@needs_history
def test_ctrl_c_on_the_command_removes_its_worktree(tmp_path):
    """The real command in a subprocess, interrupted (SIGINT) while its base worktree exists.
    The child gets SIGINT's default action back: a shell without job control starts background
    commands with SIGINT ignored (a CI script run with ``&``), Python then installs no
    KeyboardInterrupt handler, and the signal would be lost (seen 2026-12-01: the run finished, exit 0)."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "dartsfast", "bench", "ab", "--base", OLD_COMMIT, "--rounds", "1",
                             "--only", "search_step/forward+backward"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if "checked out in" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 130, out
    assert not list(tmp_path.glob("dartsfast-ab-*")) and str(tmp_path) not in _worktrees()


# ----------------------------------------------------------------------------- CLI

@pytest.mark.parametrize("args, message", [
    (["--base", "no-such-ref-19"], "'no-such-ref-19': not a commit"),
    (["--base-file", "/nonexistent/base-ref"], "--base-file /nonexistent/base-ref"),
    (["--base", "HEAD", "--rounds", "0"], "expected a positive integer"),
    (["--base", "HEAD", "--min-effect", "x"], "expected a fraction"),
    (["--base", "HEAD", "--escalate-rounds", "-1"], "--escalate-rounds must be in [0, 50], got -1"),
    ([], "one of the arguments --base --base-file is required"),
])
def test_cli_errors_exit_2(capsys, args, message):
    try:
        code = main(["bench", "ab", *args])
    except SystemExit as exc:  # argparse
        code = exc.code
    assert code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_an_empty_base_file_and_accept(tmp_path, capsys):
    empty = tmp_path / "base-ref"
    empty.write_text("# only a comment\n")
    assert main(["bench", "ab", "--base-file", str(empty)]) == EXIT_USAGE
    assert "no commit in it" in capsys.readouterr().err
    assert main(["bench", "accept", "--file", str(empty), "--reason", "  "]) == EXIT_USAGE
    assert main(["bench", "accept", "--file", str(empty), "--reason", "dwconv_se 8% slower: exact BN stats"]) == 0
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert ab.read_base_ref(empty) == head and "exact BN stats" in empty.read_text()
