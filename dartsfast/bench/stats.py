"""Statistics and verdicts of ``dartsfast bench compare``: is NEW significantly slower than BASE?

The number compared is each record's calibrated ratio (see :mod:`dartsfast.bench.runner`): the 2%
quantile of the benchmark's call times over the 2% quantile of the calibration unit's,
both pooled over all pairs of the run. Why a low quantile and not the median: interference
on a shared machine only ever *adds* time, so the fastest calls are the least disturbed,
and both sides' fastest calls come from the same quiet moments. Measured on this 2-core
runner with both cores busy with other jobs, 6 runs of unchanged code: run-to-run sd of the
ratio 0.1–1.9% (worst deviation 3.1%) with the pooled 2% quantile, against 0.3–3.7% (worst
8.8%) for the median of per-round values and 2.5–17% for the ratio of medians.

Significance: ``change = new / base − 1`` is a regression when it exceeds

    threshold = max(max_regression, K · noise),   K = 4,
    noise² = se_base² + se_new² + scatter_base² + scatter_new² + shift²

- ``se``: each run's own sampling error of its ratio (bootstrap over the pairs), < 1%;
- ``scatter``: run-to-run sd of the ratio. A baseline made of R runs (``bench
  update-baseline``, R = 5) measures it; as 5 runs can underestimate an sd, the 90% upper
  confidence bound is used (×1.94 for R = 5). One new run scatters by it, the baseline's
  median of R runs by it·sqrt(π/2R). Without a multi-run baseline it is unknown (0).
- ``shift``: |ln| of the change of the calibration unit's own time between the runs. The
  ratio cancels a uniform slowdown only to first order: in a run where a neighbour slowed
  the calibration by 6%, dwconv_se forward+backward's ratio rose 9%. So a run made under
  different conditions (a busier machine, another clock) gets a wider threshold, not a
  false alarm; in a quiet run the unit time repeats within ±1%.

Records without a calibrated ratio (benchmarks/*.py harness files) are compared on raw
medians, their noise being the per-call spread (IQR/1.349) of each side: coarse, but it
does not cry wolf when the machine's speed drifts.

K = 4: a 4-sigma excursion is ~3e-5 for a normal tail, and seven benchmarks × many CI runs
must not cry wolf. Verdicts: "ok", "regression" (the only one that fails), "improvement",
"not comparable" (another device class or calibration), "missing" (in BASE, not in NEW),
"new" (in NEW only), "error" / "skipped" (either side did not measure it).
"""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict

import torch

from dartsfast.bench.baselines import describe_key, record_key

K_SIGMA = 4.0
DEFAULT_MAX_REGRESSION = 0.10
RATIO_QUANTILE = 0.02
BOOTSTRAP = 200
# 10% quantiles of χ² with 1..10 degrees of freedom (upper confidence bound of an sd).
_CHI2_10 = (0.01579, 0.2107, 0.5844, 1.064, 1.610, 2.204, 2.833, 3.490, 4.168, 4.865)
FAILING = ("regression",)
COMPARED = ("ok", "regression", "improvement")  # verdicts that mean a benchmark was judged


def calibrated_ratio(bench, unit, q: float = RATIO_QUANTILE, *, bootstrap: int = BOOTSTRAP, seed: int = 0) -> dict:
    """q-quantile of ``bench`` over the q-quantile of ``unit`` (paired samples, equal count),
    its relative standard error (bootstrap over the pairs) and the unit's q-quantile."""
    b = torch.as_tensor(list(bench), dtype=torch.float64)
    u = torch.as_tensor(list(unit), dtype=torch.float64)
    if b.numel() != u.numel() or b.numel() < 2:
        raise ValueError(f"need ≥ 2 paired samples of equal count, got {b.numel()} and {u.numel()}")
    if not (torch.isfinite(b).all() and torch.isfinite(u).all() and (u > 0).all() and (b >= 0).all()):
        raise ValueError("samples must be finite, calibration times > 0")
    unit_q = float(torch.quantile(u, q))
    value = float(torch.quantile(b, q)) / unit_q
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(b.numel(), (bootstrap, b.numel()), generator=gen)
    boot = torch.quantile(b[idx], q, dim=1) / torch.quantile(u[idx], q, dim=1)
    rel_se = float(boot.std() / value) if value > 0 else math.inf
    return {"value": value, "quantile": q, "rel_se": rel_se, "n": int(b.numel()), "unit_s": unit_q}


def sd_upper(sd: float, runs: int) -> float:
    """90% upper confidence bound of a standard deviation estimated from ``runs`` values."""
    df = runs - 1
    if df < 1:
        return sd
    if df <= len(_CHI2_10):
        chi2 = _CHI2_10[df - 1]
    else:  # Wilson–Hilferty
        chi2 = df * (1 - 2 / (9 * df) - 1.2816 * math.sqrt(2 / (9 * df))) ** 3
    return sd * math.sqrt(df / chi2)


@dataclasses.dataclass(frozen=True)
class Metric:
    """What is compared for one record: a value (lower is faster) and what its noise needs."""

    value: float
    rel_se: float  # sampling error of the value (bootstrap), relative
    run_sd: float | None  # run-to-run relative sd (multi-run baselines), None if unknown
    runs: int  # runs the value is the median of
    unit_s: float | None  # the calibration unit's time in that run (same quantile)
    kind: str  # "calibrated" (ratio) or "raw" (median seconds)


def metric(rec: dict) -> Metric | None:
    """The record's comparable number, or None if it has none (error / skipped)."""
    if rec.get("status", "ok") != "ok":
        return None
    ratio = rec.get("ratio")
    if isinstance(ratio, dict) and "value" in ratio:
        return Metric(float(ratio["value"]), float(ratio.get("rel_se") or 0.0), ratio.get("run_rel_sd"),
                      int(ratio.get("runs", 1)), ratio.get("unit_s"), "calibrated")
    med, iqr = rec.get("median_s"), rec.get("iqr_s")
    if med is None or med <= 0:
        return None
    # Harness records (benchmarks/*.py) carry no calibration: compare raw medians. Their
    # noise is the per-call spread (IQR/1.349 ≈ sd), not the median's standard error (/√n):
    # nothing cancels machine drift, and two quick runs of bench_weighted_sum.py here had
    # medians 43–49% apart where √n-shrunk IQRs predicted < 10%.
    return Metric(float(med), (iqr or 0.0) / 1.349 / med, None, 1, None, "raw")


def calibration_shift(base: Metric, new: Metric) -> float:
    """|ln(new unit time / base unit time)|: how differently loaded (or clocked) the runs were."""
    if not base.unit_s or not new.unit_s:
        return 0.0
    return abs(math.log(new.unit_s / base.unit_s))


def noise(base: Metric, new: Metric) -> float:
    """Relative sd expected of ``new.value / base.value − 1`` on unchanged code (module docstring)."""
    known = [m for m in (base, new) if m.run_sd is not None]
    sd = sd_upper(known[0].run_sd, known[0].runs) if known else 0.0

    def scatter(m: Metric) -> float:
        return sd * math.sqrt(math.pi / (2 * m.runs)) if m.runs > 1 else sd

    return math.sqrt(base.rel_se ** 2 + new.rel_se ** 2 + scatter(base) ** 2 + scatter(new) ** 2
                     + calibration_shift(base, new) ** 2)


def threshold(base: Metric, new: Metric, max_regression: float = DEFAULT_MAX_REGRESSION, k: float = K_SIGMA) -> float:
    return max(max_regression, k * noise(base, new))


@dataclasses.dataclass
class Row:
    key: tuple
    device_class: str
    verdict: str
    base: float | None = None
    new: float | None = None
    change: float | None = None
    threshold: float | None = None
    kind: str = ""
    note: str = ""

    @property
    def label(self) -> str:
        return describe_key(self.key)


def _index(doc: dict) -> dict:
    out: dict = defaultdict(dict)
    for rec in doc["records"]:
        out[record_key(rec)][rec["device_class"]] = rec
    return out


def _compare_pair(key, cls, b: dict, n: dict, max_regression: float, k: float) -> Row:
    for side, rec in (("base", b), ("new", n)):
        if rec.get("status", "ok") != "ok":
            return Row(key, cls, rec["status"], note=f"{side}: {rec.get('error', '')}"[:80])
    bu, nu = ((r.get("calibration") or {}).get("units") for r in (b, n))
    if bu != nu and bu is not None and nu is not None:
        return Row(key, cls, "not comparable", note=f"calibration units {bu} vs {nu}")
    mb, mn = metric(b), metric(n)
    if mb is None or mn is None or mb.kind != mn.kind:
        # one side calibrated, the other not (e.g. a harness file): fall back to raw times
        mb, mn = metric({**b, "ratio": None}), metric({**n, "ratio": None})
    if mb is None or mn is None:
        return Row(key, cls, "error", note="no timing to compare")
    change = mn.value / mb.value - 1.0
    thr = threshold(mb, mn, max_regression, k)
    verdict = "regression" if change > thr else "improvement" if change < -thr else "ok"
    notes = [f"planted {100 * p:.0f}% in {side}" for side, p in
             (("base", b.get("planted_slowdown")), ("new", n.get("planted_slowdown"))) if p]
    shift = calibration_shift(mb, mn)
    if shift > 0.03:
        notes.append(f"calibration {100 * (math.exp(shift) - 1):.0f}% {'slower' if mn.unit_s > mb.unit_s else 'faster'}"
                     f" than base: threshold widened")
    busy = _load(n)
    if busy is not None and busy > 1.2:
        # diagnostic only (the threshold already holds the baseline's measured run-to-run noise)
        notes.append(f"busy machine: calibration median {busy:.2f}× its fastest calls")
    if mb.kind == "raw":
        notes.append("uncalibrated: raw medians, threshold from the per-call spread")
    elif mb.run_sd is None and mn.run_sd is None:
        notes.append("single-run base: run-to-run noise unknown")
    return Row(key, cls, verdict, mb.value, mn.value, change, thr, mb.kind, "; ".join(notes))


def _load(rec: dict) -> float | None:
    """Calibration median / its 2% quantile: ~1.05 on a quiet machine, 1.3 with both cores
    of this runner busy with other jobs (when long benchmarks' ratios rose up to 10%)."""
    median = (rec.get("calibration") or {}).get("unit_median_s")
    fastest = (rec.get("ratio") or {}).get("unit_s")
    return median / fastest if median and fastest else None


def compare(base_doc: dict, new_doc: dict, max_regression: float = DEFAULT_MAX_REGRESSION,
            k: float = K_SIGMA) -> list[Row]:
    """One row per benchmark in either document (validated by :mod:`dartsfast.records`)."""
    if isinstance(max_regression, bool) or not isinstance(max_regression, (int, float)) \
            or not 0 <= max_regression < 10:
        raise ValueError(f"max_regression must be a fraction in [0, 10), e.g. 0.10 for 10%, got {max_regression!r}")
    base, new = _index(base_doc), _index(new_doc)
    rows = []
    for key, by_class in new.items():
        for cls, n in by_class.items():
            b = base.get(key, {}).get(cls)
            if b is not None:
                rows.append(_compare_pair(key, cls, b, n, max_regression, k))
            elif key in base:
                rows.append(Row(key, cls, "not comparable", note=f"base measured it on {', '.join(sorted(base[key]))}"))
            else:
                rows.append(Row(key, cls, "new", note="not in base"))
    for key, by_class in base.items():
        if key not in new:
            rows.extend(Row(key, cls, "missing", note="in base, not in new") for cls in by_class)
    return rows


def has_regression(rows: list[Row]) -> bool:
    return any(r.verdict in FAILING for r in rows)


def format_table(rows: list[Row]) -> str:
    """Markdown table: benchmark, device class, base, new, change, threshold, verdict, note."""
    out = ["| benchmark | device class | base | new | change | threshold | verdict | note |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base, new = ("–" if v is None else f"{v:.4g}" for v in (r.base, r.new))
        change = "–" if r.change is None else f"{100 * r.change:+.1f}%"
        thr = "–" if r.threshold is None else f"+{100 * r.threshold:.1f}%"
        verdict = f"**{r.verdict.upper()}**" if r.verdict in FAILING else r.verdict
        out.append(f"| {r.label} | {r.device_class} | {base} | {new} | {change} | {thr} | {verdict} | {r.note} |")
    return "\n".join(out)


def summary(rows: list[Row]) -> str:
    counts: dict = defaultdict(int)
    for r in rows:
        counts[r.verdict] += 1
    parts = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    return ("REGRESSION: " if has_regression(rows) else "no significant regression: ") + parts


def gate_problems(base_doc: dict, new_doc: dict, rows: list[Row], *, allow_missing: bool = False,
                  allow_errors: bool = False, allow_incomparable: bool = False) -> list[str]:
    """Why the gate cannot pass on these documents (empty: it may). The gate never passes on
    nothing: a NEW without records, a base of another suite, benchmarks missing from NEW,
    erroring or skipped, or not comparable fail (exit 2) unless explicitly allowed; a
    comparison in which no benchmark was judged at all always fails."""
    problems = []
    for side, doc in (("base", base_doc), ("new", new_doc)):
        if not doc.get("records"):
            problems.append(f"{side} has no records (a `bench run` that measured nothing?)")
    suites = (base_doc.get("suite"), new_doc.get("suite"))
    if None not in suites and suites[0] != suites[1] and not allow_incomparable:
        problems.append(f"base is suite {suites[0]!r}, new is suite {suites[1]!r}")

    def names(verdicts):
        return ", ".join(f"{r.label}{' (' + r.note + ')' if r.note else ''}" for r in rows if r.verdict in verdicts)

    for verdicts, allowed, what in ((("missing",), allow_missing, "missing from new (--allow-missing)"),
                                    (("error", "skipped"), allow_errors, "not measured (--allow-errors)"),
                                    (("not comparable",), allow_incomparable, "not comparable (--allow-incomparable)")):
        if not allowed and any(r.verdict in verdicts for r in rows):
            problems.append(f"{what}: {names(verdicts)}")
    if not any(r.verdict in COMPARED for r in rows):
        problems.append("no benchmark was compared: nothing in new has a comparable measurement in base")
    return problems
