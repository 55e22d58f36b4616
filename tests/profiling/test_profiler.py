"""The block profiler on CPU at tiny sizes: sane ordered quantiles, records that validate,
unsupported / failing / over-budget cases recorded instead of raised, the per-stage
comparison arithmetic, and the Markdown and PNG outputs (existence, magic bytes, size)."""
import copy
import json
import math

import pytest

from dartsfast import records
from dartsfast.profiling import plots, report
from dartsfast.profiling.models import block_cost
from dartsfast.profiling.presets import BlockShape, BlockSpec
from dartsfast.profiling.profiler import Case, ProfileRun, iter_cases, make_record, profile
from dartsfast.timing import TimingStats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SHAPE = BlockShape(8, 8, 6, 6, 1, 2.0, preset="shape", stage="tiny")
FAST = dict(device="cpu", warmup=1, repeats=5, progress=False, threads=1)


@pytest.fixture(scope="module")
def tiny_doc():
    specs = [BlockSpec("mbconv", SHAPE, 0.25), BlockSpec("fused_mbconv", SHAPE, 0.0)]
    return profile(specs, dtypes=("float32", "float16"), layouts=("nchw", "channels_last"),
                   impls=("eager", "fused"), modes=("inference", "training"), batch_sizes=(2,), **FAST)


def test_cpu_profile_reports_sane_positive_ordered_quantiles(tiny_doc):
    records.validate_document(tiny_doc)
    ok = [r for r in tiny_doc["records"] if r["status"] == "ok"]
    # fp32: 2 layouts × 2 modes × (MBConv eager + fused, Fused-MBConv eager) = 12 timed cases.
    assert len(ok) == 12
    for r in ok:
        assert r["n"] == 5
        assert 0 < r["min_s"] <= r["q25_s"] <= r["median_s"] <= r["q75_s"] < math.inf
        assert r["iqr_s"] == pytest.approx(r["q75_s"] - r["q25_s"]) and r["iqr_s"] >= 0
        assert r["images_per_s"] == pytest.approx(2 / r["median_s"])
        assert r["peak_mem_bytes"] is None and r["device_type"] == "cpu"  # no allocator stats on CPU
        assert r["pct_of_bandwidth_ceiling"] > 0 and r["pct_of_compute_ceiling"] > 0
    # Every timed inference case has its training twin (the wall-clock comparison of the two
    # is test_training_is_slower_than_inference, marked `timing`).
    keys = {(r["block"], r["layout"], r["impl"], r["mode"]) for r in ok}
    assert {k[:3] for k in keys if k[3] == "training"} == {k[:3] for k in keys if k[3] == "inference"}
    fused = [r for r in ok if r["impl"] == "fused"]
    assert fused and {r["backend"] for r in fused} == {"torch"}  # auto on CPU: the torch reference


@pytest.mark.timing
def test_training_is_slower_than_inference(tiny_doc):
    # Training is forward + backward + step: slower than the forward alone, median to median.
    by_key = {(r["block"], r["layout"], r["impl"], r["mode"]): r["median_s"]
              for r in tiny_doc["records"] if r["status"] == "ok"}
    slower = [by_key[k[:3] + ("training",)] > by_key[k] for k in by_key if k[3] == "inference"]
    assert sum(slower) >= len(slower) - 1  # one inversion allowed on a noisy runner


def test_unsupported_combinations_are_records_with_reasons(tiny_doc):
    reasons = {(r["block"], r["dtype"], r["impl"]): r["reason"] for r in tiny_doc["records"]
               if r["status"] == "unsupported"}
    assert "float16 is profiled on CUDA only" in reasons[("mbconv", "float16", "eager")]
    assert "without squeeze-excitation" in reasons[("fused_mbconv", "float32", "fused")]
    assert all(r["median_s"] is None for r in tiny_doc["records"] if r["status"] != "ok")
    assert len(tiny_doc["records"]) == 2 * 2 * 2 * 2 * 2  # blocks × dtypes × layouts × impls × modes


def test_failures_and_budgets_do_not_stop_the_sweep():
    # Training BN on a batch of one 1×1 image has one value per channel: the case fails
    # inside PyTorch; the run records it and goes on.
    one_pixel = BlockSpec("dsconv", BlockShape(4, 4, 1, 1, 1, 1.0, stage="px"), 0.25)
    run = ProfileRun(**FAST)
    cases = iter_cases([one_pixel], ("float32",), ("nchw",), ("eager",), ("training", "inference"), (1,))
    first, second = run.run(cases)
    assert first["status"] == "error" and "more than 1 value per channel" in first["reason"]
    assert second["status"] == "ok"
    over = ProfileRun(max_seconds=1e-9, **FAST)
    rec = over.run_case(Case(one_pixel, "float32", "nchw", "eager", "inference", 1))
    assert rec["status"] == "skipped" and "time budget" in rec["reason"]
    records.validate_document(run.document())


def test_compile_impl_and_its_budget():
    spec = BlockSpec("fused_mbconv", BlockShape(4, 4, 4, 4, 1, 1.0, stage="c"), 0.0)
    run = ProfileRun(compile_budget_s=1e-6, **FAST)
    # The first compile case runs (nothing spent yet) and spends the budget; the second is skipped.
    a, b = run.run(iter_cases([spec], ("float32",), ("nchw",), ("compile",), ("inference",), (2, 3)))
    assert a["status"] == "ok", a["reason"]
    assert a["compile_backend"] == "aot_eager" and a["compile_s"] > 0
    assert b["status"] == "skipped" and "compile budget" in b["reason"]
    broken = ProfileRun(compile_backend="no_such_backend", **FAST)  # a compile failure is a record
    rec = broken.run_case(Case(spec, "float32", "nchw", "compile", "inference", 2))
    assert rec["status"] == "error" and "no_such_backend" in rec["reason"]


def test_iter_cases_puts_compile_last():
    spec = BlockSpec("mbconv", SHAPE, 0.25)
    cases = iter_cases([spec, spec], ("float32",), ("nchw",), ("compile", "eager"), ("inference",), (1, 2))
    assert [c.impl for c in cases] == ["eager"] * 4 + ["compile"] * 4


def test_validator_names_problems(tiny_doc):
    good = next(r for r in tiny_doc["records"] if r["status"] == "ok")
    cases = {
        "quantiles out of order": dict(q25_s=good["median_s"] * 2),
        "missing field 'median_s'": None,
        "status 'done' is not one of": dict(status="done"),
        "images_per_s": dict(images_per_s=good["images_per_s"] * 3),
        "batch=2.5 is not int": dict(batch=2.5),
        "unknown field 'colour'": dict(colour="red"),
    }
    for message, change in cases.items():
        bad = copy.deepcopy(good)
        if change is None:
            del bad["median_s"]
        else:
            bad.update(change)
        with pytest.raises(ValueError, match=message):
            records.validate_profile_record(bad)
    skipped = dict(copy.deepcopy(good), status="skipped", reason="")
    assert any("needs a reason" in p for p in records.profile_record_problems(skipped))
    with pytest.raises(ValueError, match="schema"):
        records.validate_document({"schema": "something/1"})


def _fake(block, shape, impl, median, env):
    stats = TimingStats.from_samples([median] * 3)
    spec = BlockSpec(block, shape, 0.0)
    return make_record(spec, dtype="bfloat16", layout="channels_last", impl=impl, mode="training",
                               batch=4, env=env, cost=block_cost(spec, 4, 2, "training"), ceilings={},
                               stats=stats)


def test_stage_comparison_sums_first_and_repeats():
    env = {"device_name": "test", "device_type": "cpu"}
    first = BlockShape(8, 16, 8, 8, 2, 4.0, preset="p", stage="s1", position="first")
    rest = BlockShape(16, 16, 4, 4, 1, 4.0, count=3, preset="p", stage="s1", position="rest")
    only_first = BlockShape(16, 32, 4, 4, 2, 4.0, preset="p", stage="s2", position="first")
    only_rest = BlockShape(32, 32, 2, 2, 1, 4.0, count=2, preset="p", stage="s2", position="rest")
    recs = [_fake("mbconv", first, "eager", 1e-3, env), _fake("mbconv", rest, "eager", 2e-3, env),
            _fake("mbconv", first, "fused", 0.5e-3, env), _fake("mbconv", rest, "fused", 3e-3, env),
            _fake("fused_mbconv", first, "eager", 2e-3, env), _fake("fused_mbconv", rest, "eager", 1e-3, env),
            _fake("mbconv", only_first, "eager", 1e-3, env), _fake("mbconv", only_rest, "eager", 1e-3, env),
            _fake("fused_mbconv", only_first, "eager", 1e-3, env)]  # s2 lacks a Fused-MBConv 'rest'
    rows = report.comparison_rows(recs)
    assert len(rows) == 1  # a stage missing a position is not compared
    row = rows[0]
    # MBConv eager 1 + 3·2 = 7 ms; fused 0.5 + 3·3 = 9.5 ms → best 7 (eager). Fused-MBConv 2 + 3·1 = 5.
    assert row["mbconv_s"] == pytest.approx(7e-3) and row["mbconv_impl"] == "eager"
    assert row["fused_s"] == pytest.approx(5e-3) and row["ratio"] == pytest.approx(5 / 7)
    assert row["faster"] == "Fused-MBConv"
    table = report.comparison_markdown(recs)
    assert "| s1 | 8→16 8×8 s2 e4 k3 | 7.000 | 9.500 | 5.000 | 0.71× | Fused-MBConv |" in table


def test_outputs_json_markdown_and_pngs(tiny_doc, tmp_path):
    records.write_document(str(tmp_path / "p.json"), tiny_doc)
    assert records.validate_document(json.loads((tmp_path / "p.json").read_text()))["records"]
    report.write_markdown(str(tmp_path / "p.md"), tiny_doc)
    md = (tmp_path / "p.md").read_text()
    assert "## MBConv vs Fused-MBConv per stage" in md and "| tiny |" in md and "## Every record" in md
    assert md.count("\n| MBConv |") + md.count("\n| Fused-MBConv |") == len(tiny_doc["records"])
    plots.plot_stage_latency(tiny_doc["records"], str(tmp_path / "stages.png"), size=(640, 400))
    plots.plot_roofline(tiny_doc["records"], tiny_doc["ceilings"], str(tmp_path / "roof.png"), size=(500, 420))
    from PIL import Image

    for name, size in (("stages.png", (640, 400)), ("roof.png", (500, 420))):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000
        with Image.open(tmp_path / name) as im:
            assert im.size == size
            assert len(im.convert("L").getcolors(256)) > 10  # something was drawn, not a blank canvas
    with pytest.raises(ValueError, match="1200x700"):
        plots.parse_size("1200*700")
