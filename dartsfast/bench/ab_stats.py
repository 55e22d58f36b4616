"""Verdicts of ``dartsfast bench ab``: base and head timed side by side in one job.

Each process of the A/B run (``bench run`` of one tree) gives one number per benchmark,
its calibrated ratio (:mod:`dartsfast.bench.runner`). Processes alternate base and head
(A B B A per round), so the machine's drift falls on both alike, and the spread of the
values *between processes of one side* is the noise the verdict needs — measured in the
same job, on the same machine, under the same load, with no stored baseline.

For one benchmark with base values b₁…bₙ and head values h₁…hₘ (logs):

    change    = exp(median(ln h) − median(ln b)) − 1
    spread    = pooled sd of ln b and ln h around their own means, each side without its
                value farthest from its median when it has ≥ 4 (df = n + m − 4)
    spread⁺   = its 90% upper confidence bound: spread · sqrt(df / χ²₀.₁₀(df))
    se        = spread⁺ · sqrt(π/2) · sqrt(1/n + 1/m)      (median of each side)
    threshold = max(min_effect, K · se),  K = 4

A regression is ``ln(1 + change) > ln(1 + threshold)``: slower than the smallest slowdown
this benchmark can reliably show in this run, and than ``min_effect`` (default 6%: a
change smaller than that is not worth failing a pull request on; on values resampled from
this machine's measured A/A noise, 5% let the search step through in 8 of 4000 runs, 6%
in none, and still flags a 10% slowdown of dwconv_se forward in every run). The medians
make one process hit by a burst of load (a 15–30% slow process happens on a shared
runner) move the change little, and the spread leaves out each side's farthest process. The 95%
interval of the change shown in the report is a bootstrap (scipy.stats.bootstrap) over
the processes; it is information, the verdict uses the threshold.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import stats as sps

K_SIGMA = 4.0
DEFAULT_MIN_EFFECT = 0.06
UPPER_CONFIDENCE = 0.90  # of the spread
COMPARED = ("ok", "regression", "improvement")
# A change over 3/4 of the minimum effect in a noisy run is undecided, not just one over it: a
# 10% slowdown seen through 3% noise between processes shows under 6% in ~7% of runs, and
# synthetic runs (3% noise, 2% of processes in a burst) flag it in 0.91 of 400 with the 6%
# trigger, 0.96 with 4.5%; A/A stays 0 and costs 0.07 more rounds a benchmark.
UNDECIDED_FRACTION = 0.75


@dataclasses.dataclass
class Judgement:
    verdict: str  # "ok" | "regression" | "improvement"
    change: float  # head / base − 1 (medians)
    threshold: float
    spread: float  # pooled sd of the logs (relative, between processes)
    ci: tuple[float, float] | None  # 95% bootstrap interval of the change, None when too few
    n_base: int
    n_head: int
    base: float  # median base value
    head: float


def spread_upper(sd: float, df: int, confidence: float = UPPER_CONFIDENCE) -> float:
    """Upper ``confidence`` bound of a standard deviation estimated with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    return sd * math.sqrt(df / sps.chi2.ppf(1 - confidence, df))


def _trim(x: np.ndarray) -> np.ndarray:
    """``x`` without its value farthest from the median, when ≥ 4 remain: one process hit by a
    burst of load must not inflate the spread (the median already ignores it)."""
    return x if x.size < 4 else np.delete(x, np.argmax(np.abs(x - np.median(x))))


def judge(base, head, *, min_effect: float = DEFAULT_MIN_EFFECT, k: float = K_SIGMA,
          bootstrap: bool = True, seed: int = 0) -> Judgement:
    """The verdict for one benchmark from its per-process values of each side (module docstring)."""
    b = np.log(np.asarray(base, dtype=np.float64))
    h = np.log(np.asarray(head, dtype=np.float64))
    if b.size < 2 or h.size < 2:
        raise ValueError(f"need ≥ 2 processes per side to measure the spread, got {b.size} base and {h.size} head")
    if not (np.isfinite(b).all() and np.isfinite(h).all()):
        raise ValueError("values must be finite and > 0")
    kept = [_trim(x) for x in (b, h)]
    df = sum(x.size - 1 for x in kept)
    sd = math.sqrt(sum(x.var(ddof=1) * (x.size - 1) for x in kept) / df)
    se = spread_upper(sd, df) * math.sqrt(math.pi / 2) * math.sqrt(1 / b.size + 1 / h.size)
    log_change = float(np.median(h) - np.median(b))
    log_thr = max(math.log1p(min_effect), k * se)
    verdict = "regression" if log_change > log_thr else "improvement" if log_change < -log_thr else "ok"
    ci = None
    if bootstrap and b.size >= 3 and h.size >= 3:
        res = sps.bootstrap((h, b), lambda x, y, axis=-1: np.median(x, axis=axis) - np.median(y, axis=axis),
                            n_resamples=999, confidence_level=0.95, method="percentile",
                            rng=np.random.default_rng(seed))
        ci = (math.expm1(res.confidence_interval.low), math.expm1(res.confidence_interval.high))
    return Judgement(verdict, math.expm1(log_change), math.expm1(log_thr), sd, ci, int(b.size), int(h.size),
                     float(np.exp(np.median(b))), float(np.exp(np.median(h))))


def undecided(row: dict, min_effect: float = DEFAULT_MIN_EFFECT) -> bool:
    """A verdict row that the run's noise, not the code, passed: slower by more than
    ``UNDECIDED_FRACTION`` of ``min_effect`` with a threshold above ``min_effect`` (so the
    spread, not the minimum effect, set it). More processes can still flag it."""
    return (row.get("verdict") == "ok" and row.get("change") is not None and row.get("threshold") is not None
            and row["change"] > UNDECIDED_FRACTION * min_effect and row["threshold"] > min_effect * (1 + 1e-9))


def _escalated(report: dict) -> str:
    """'name (N rounds), ...' from the report's escalation steps."""
    rounds: dict[str, int] = {}
    for step in report.get("escalation", []):
        for name in step["names"]:
            rounds[name] = rounds.get(name, 0) + step["rounds"]
    return ", ".join(f"{name} ({n} round{'s' * (n != 1)})" for name, n in rounds.items())


def format_markdown(report: dict) -> str:
    """The report as Markdown: what was compared, one row per benchmark, the problems, the outcome."""
    base, head = report["base"], report["head"]
    dirty = " + uncommitted" if head.get("dirty") else ""
    lines = [f"## dartsfast bench ab: {head['ref']} ({head['commit'][:12]}{dirty})"
             f" vs {base['ref']} ({base['commit'][:12]})", "",
             f"Suite {report['suite']}, {report['rounds']} round(s) of A B B A ({report['processes']} processes), "
             f"device class {report.get('device_class', '?')}, {report['seconds']:.0f} s. change = head / base − 1 "
             f"of the medians of each side's calibrated ratios; threshold = max({100 * report['min_effect']:g}%, "
             f"{report['k_sigma']:g} × standard error from the spread between processes)."
             + (f" Undecided, so given more rounds of their own: {_escalated(report)}."
                if report.get("escalated") else ""), "",
             "| benchmark | base | head | change | 95% interval | threshold | spread | verdict | note |",
             "|---|---|---|---|---|---|---|---|---|"]

    def pct(x):
        return "–" if x is None else f"{100 * x:+.1f}%"

    for r in report["rows"]:
        ci = "–" if not r.get("ci") else f"{pct(r['ci'][0])} … {pct(r['ci'][1])}"
        thr = "–" if r.get("threshold") is None else f"+{100 * r['threshold']:.1f}%"
        spread = "–" if r.get("spread") is None else f"{100 * r['spread']:.1f}%"
        base_v, head_v = ("–" if r.get(k) is None else f"{r[k]:.4g}" for k in ("base", "head"))
        verdict = f"**{r['verdict'].upper()}**" if r["verdict"] == "regression" else r["verdict"]
        lines.append(f"| {r['benchmark']} | {base_v} | {head_v} | {pct(r.get('change'))} | {ci} | {thr} | {spread} "
                     f"| {verdict} | {r.get('note', '')} |")
    lines.append("")
    lines += [f"- cannot pass: {p}" for p in report["problems"]]
    lines.append(f"**{report['outcome']}** (exit {report['exit']})")
    return "\n".join(lines) + "\n"
