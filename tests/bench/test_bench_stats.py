"""Regression-tracking statistics on synthetic records of known noise (no timing): matching,
thresholds, verdicts, baselines from several runs, file validation, device classes."""
import math
import random
import sys
from pathlib import Path

import pytest

from dartsfast.bench import stats as bs
from dartsfast.bench.baselines import merge_runs
from dartsfast.bench.runner import PLANT_ENV, bench_record, parse_plant
from dartsfast.bench.suites import suite
from dartsfast.timing import quantile

CPU = "cpu-x86_64-2c-amd-epyc"


def rec(name="ws/forward", value=10.0, *, rel_se=0.001, unit_s=1e-4, run_sd=None, runs=1, cls=CPU,
        params=None, provider="torch", status="ok", units=5, planted=0.0, **extra):
    ratio = {"value": value, "rel_se": rel_se, "n": 500, "unit_s": unit_s, "runs": runs, "run_rel_sd": run_sd}
    return {"name": name, "params": params or {"K": 4}, "provider": provider, "dtype": "float32", "layout": "flat",
            "device_class": cls, "status": status, "error": "" if status == "ok" else "boom",
            "median_s": value * unit_s, "iqr_s": 0.0, "n": 500, "ratio": ratio if status == "ok" else None,
            "calibration": {"units": units}, "planted_slowdown": planted, **extra}


def doc(*records):
    return {"records": list(records)}


def verdicts(base, new, **kw):
    return {(r.label.split(" ")[0], r.device_class): r for r in bs.compare(doc(*base), doc(*new), **kw)}


def test_unchanged_is_ok_and_a_20pct_slowdown_is_a_regression():
    rows = verdicts([rec()], [rec()])
    assert rows["ws/forward", CPU].verdict == "ok" and rows["ws/forward", CPU].change == 0
    rows = bs.compare(doc(rec()), doc(rec(value=12.0)))
    assert [r.verdict for r in rows] == ["regression"] and bs.has_regression(rows)
    assert rows[0].change == pytest.approx(0.2) and rows[0].threshold == pytest.approx(0.10)
    assert "REGRESSION" in bs.summary(rows) and "**REGRESSION**" in bs.format_table(rows)


def test_improvement_never_fails_and_small_changes_are_ok():
    assert verdicts([rec()], [rec(value=7.0)])["ws/forward", CPU].verdict == "improvement"
    assert verdicts([rec()], [rec(value=10.9)])["ws/forward", CPU].verdict == "ok"  # +9% < 10%
    assert not bs.has_regression(bs.compare(doc(rec()), doc(rec(value=7.0))))


def test_max_regression_is_the_floor_of_the_threshold():
    assert verdicts([rec()], [rec(value=10.6)], max_regression=0.05)["ws/forward", CPU].verdict == "regression"
    assert verdicts([rec()], [rec(value=12.0)], max_regression=0.25)["ws/forward", CPU].verdict == "ok"
    with pytest.raises(ValueError, match="max_regression"):
        bs.compare(doc(rec()), doc(rec()), max_regression=-0.1)


def test_noise_from_a_multi_run_baseline_raises_the_threshold():
    # Baseline: median of 5 runs with a 3% run-to-run sd → 90% upper bound 3%·1.94; the new
    # single run scatters by that, the base median by that·sqrt(π/10).
    base = rec(run_sd=0.03, runs=5, rel_se=0.0)
    new = rec(value=12.0, rel_se=0.0)
    sd = 0.03 * math.sqrt(4 / 1.064)
    expected = 4 * math.sqrt(sd ** 2 + (sd * math.sqrt(math.pi / 10)) ** 2)
    row = bs.compare(doc(base), doc(new))[0]
    assert row.threshold == pytest.approx(expected) and expected > 0.2
    assert row.verdict == "ok"  # +20% is within 4 sigma of this much noise
    quiet = bs.compare(doc(rec(run_sd=0.005, runs=5)), doc(new))[0]
    assert quiet.verdict == "regression" and quiet.threshold == pytest.approx(0.10)


def test_a_calibration_shift_widens_the_threshold():
    # Same +15% change; in the second run the calibration itself was 6% slower (a busier
    # machine), which the ratio cancels only to first order.
    assert verdicts([rec()], [rec(value=11.5)])["ws/forward", CPU].verdict == "regression"
    row = verdicts([rec()], [rec(value=11.5, unit_s=1.06e-4)])["ws/forward", CPU]
    assert row.verdict == "ok" and row.threshold == pytest.approx(4 * math.sqrt(2e-6 + math.log(1.06) ** 2))
    assert "calibration 6% slower" in row.note


def test_other_device_class_is_never_compared():
    rows = verdicts([rec(cls="gpu-nvidia-h100")], [rec(value=100.0)])
    assert rows["ws/forward", CPU].verdict == "not comparable" and rows["ws/forward", CPU].change is None
    assert "gpu-nvidia-h100" in rows["ws/forward", CPU].note
    assert not bs.has_regression(bs.compare(doc(rec(cls="gpu-nvidia-h100")), doc(rec(value=100.0))))


def test_matching_uses_name_params_backend_and_flags_missing_and_new():
    base = [rec("a"), rec("b"), rec("c", params={"K": 8}), rec("d", provider="triton")]
    new = [rec("a"), rec("c", params={"K": 4}, value=50.0), rec("d", provider="torch", value=50.0), rec("e")]
    rows = {(r.label, r.verdict) for r in bs.compare(doc(*base), doc(*new))}
    assert rows == {("a [K=4] (torch/float32/flat)", "ok"), ("b [K=4] (torch/float32/flat)", "missing"),
                    ("c [K=8] (torch/float32/flat)", "missing"), ("d [K=4] (triton/float32/flat)", "missing"),
                    ("c [K=4] (torch/float32/flat)", "new"), ("d [K=4] (torch/float32/flat)", "new"),
                    ("e [K=4] (torch/float32/flat)", "new")}
    # other params / backend are different benchmarks: 5x slower, yet never compared
    assert not bs.has_regression(bs.compare(doc(*base), doc(*new)))


def test_errors_and_changed_calibration_are_reported_not_compared():
    rows = bs.compare(doc(rec("a"), rec("b"), rec("c")),
                      doc(rec("a", status="error"), rec("b", status="skipped"), rec("c", units=9, value=99.0)))
    assert [r.verdict for r in rows] == ["error", "skipped", "not comparable"]
    assert "calibration units 5 vs 9" in rows[2].note and not bs.has_regression(rows)


def test_uncalibrated_harness_records_compare_raw_medians_with_the_per_call_spread():
    def harness_rec(median, iqr, n):
        return {"name": "weighted_sum/forward", "params": {"K": 4}, "provider": "eager", "dtype": "bfloat16",
                "layout": "flat", "device_class": CPU, "status": "ok", "median_s": median, "iqr_s": iqr, "n": n}
    row = bs.compare(doc(harness_rec(1e-3, 0, 20)), doc(harness_rec(1.3e-3, 0, 20)))[0]
    assert (row.kind, row.verdict, row.change) == ("raw", "regression", pytest.approx(0.3))
    assert "uncalibrated" in row.note
    # IQR 10% of the median: per-call sd ≈ 7.4% each side, so +30% is within 4 sigma — however
    # many calls were timed (drift of raw medians between runs is not shrunk by n)
    noisy = bs.compare(doc(harness_rec(1e-3, 1e-4, 1000)), doc(harness_rec(1.3e-3, 1.3e-4, 1000)))[0]
    assert noisy.verdict == "ok"
    assert noisy.threshold == pytest.approx(4 * math.sqrt(2) * 0.1 / 1.349)


def test_known_noise_gives_no_false_alarms_and_catches_20pct():
    # Runs whose ratio scatters lognormally by 1.5% (about the worst quick benchmark here):
    # 40 baselines of 8 runs (update-baseline's default), each compared with 10 unchanged
    # and 10 slowed-by-20% runs. The threshold is ~10–15% (4 sigma of the upper-bound sd):
    # an unchanged run at +10% is a 6-sigma event; a slowed run is missed only when an unlucky
    # 8-run sd estimate and a low draw meet (1 in 400 with this seed; ≥ 99% is the bar).
    rng = random.Random(7)
    sd = 0.015

    def run(scale=1.0):
        return rec(value=10.0 * scale * math.exp(rng.gauss(0, sd)), rel_se=0.002)

    alarms = caught = 0
    for _trial in range(40):
        base = merge_runs([doc(run()) | {"device_class": CPU} for _ in range(8)])
        for _ in range(10):
            alarms += bs.has_regression(bs.compare(base, doc(run())))
            caught += bs.has_regression(bs.compare(base, doc(run(1.2))))
    assert alarms == 0 and caught >= 396


def test_merge_runs_takes_the_median_and_the_spread():
    runs = [doc(rec(value=v, unit_s=u)) | {"device_class": CPU} for v, u in ((10, 1e-4), (11, 2e-4), (12, 3e-4))]
    base = merge_runs(runs)
    ratio = base["records"][0]["ratio"]
    assert ratio["value"] == 11 and ratio["runs"] == 3 and ratio["run_values"] == [10, 11, 12]
    assert ratio["run_rel_sd"] == pytest.approx(1 / 11) and ratio["unit_s"] == pytest.approx(2e-4)
    assert base["baseline"]["runs"] == 3


def test_merge_runs_refuses_planted_and_mixed_classes():
    with pytest.raises(ValueError, match="planted"):
        merge_runs([doc(rec(planted=0.2)) | {"device_class": CPU}])
    with pytest.raises(ValueError, match="different device classes"):
        merge_runs([doc(rec()) | {"device_class": CPU}, doc(rec()) | {"device_class": "gpu-x"}])
    with pytest.raises(ValueError, match="no runs"):
        merge_runs([])


def test_sd_upper_bound():
    assert bs.sd_upper(0.01, 5) == pytest.approx(0.01 * 1.9386, rel=1e-3)
    assert bs.sd_upper(0.01, 1) == 0.01
    factors = [bs.sd_upper(1.0, r) for r in range(2, 40)]
    assert all(a > b > 1 for a, b in zip(factors, factors[1:]))  # more runs, tighter bound
    assert bs.sd_upper(1.0, 11) == pytest.approx(math.sqrt(10 / 4.865), rel=1e-3)
    assert bs.sd_upper(1.0, 12) == pytest.approx(math.sqrt(11 / 5.578), rel=0.01)  # Wilson–Hilferty


def test_calibrated_ratio_of_known_samples():
    unit = [1.0 + 0.01 * i for i in range(100)]
    r = bs.calibrated_ratio([3 * u for u in unit], unit)
    assert r["value"] == pytest.approx(3.0) and r["rel_se"] == pytest.approx(0, abs=1e-12)
    assert r["unit_s"] == pytest.approx(quantile(unit, 0.02)) and r["n"] == 100
    # interference only adds time: slow outliers on 30% of the calls leave the 2% quantile alone
    rng = random.Random(1)
    noisy = [3 * u * (1 + (rng.random() < 0.3) * rng.uniform(0.2, 2)) for u in unit]
    assert bs.calibrated_ratio(noisy, unit)["value"] == pytest.approx(3.0, rel=0.02)
    with pytest.raises(ValueError, match="paired"):
        bs.calibrated_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        bs.calibrated_ratio([1.0, 2.0], [1.0, 0.0])


def test_plant_spec_parsing():
    known = ["a/forward", "b"]
    assert parse_plant("a/forward:0.2, b:1", known) == {"a/forward": 0.2, "b": 1.0}
    assert parse_plant("", known) == {} and parse_plant(None, known) == {}
    for bad, match in (("a/forward", "NAME:FRACTION"), ("a/forward:x", "NAME:FRACTION"),
                       ("a/forward:0", "NAME:FRACTION"), ("c:0.2", "unknown benchmark 'c'")):
        with pytest.raises(ValueError, match=match) as info:
            parse_plant(bad, known)
        assert PLANT_ENV in str(info.value)


def test_records_carry_every_harness_field():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import harness

    env = {"device_type": "cpu", "device_name": "cpu", "cpu_model": "X", "cpu_count": 2, "platform": "x86_64"}
    ours = bench_record(suite("quick")[0], env=env, provider_name="torch", params={"K": 4})
    theirs = harness.make_record(name="n", params={}, provider="torch", dtype="float32", layout="flat", env=env)
    assert set(theirs) <= set(ours) and ours["device_class"] == "cpu-x86_64-2c-x"


def test_a_busy_new_run_is_noted_but_judged_by_the_same_threshold():
    busy = rec(value=10.5, calibration={"units": 5, "unit_median_s": 1.3e-4})
    row = bs.compare(doc(rec()), doc(busy))[0]
    assert row.verdict == "ok" and "busy machine: calibration median 1.30×" in row.note
    assert row.threshold == bs.compare(doc(rec()), doc(rec(value=10.5)))[0].threshold
    assert "busy" not in bs.compare(doc(rec()), doc(rec(calibration={"units": 5, "unit_median_s": 1.05e-4})))[0].note
