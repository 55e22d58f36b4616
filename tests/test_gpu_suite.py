"""benchmarks/gpu_suite.sh: the dry run on the CPU (every phase at tiny sizes, exactly two files
in OUTDIR with every record in the archive), a phase run alone, the no-GPU exit, step caps
and budgets, and the summary's verdicts on synthetic GPU records."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from dartsfast.testing import SUBPROCESS_TIMEOUT_S

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_suite.sh"
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_suite  # noqa: E402
import gpu_summary  # noqa: E402

MAX_OUT_FILES = 6  # issue 12; the device tool returns at most 8
WORK_FILES = {"steps.json", "versions.json", "warm.json", "pytest_gpu.xml", "pytest_rest.xml",
              "bench_weighted_sum.json", "bench_dwconv_se.json", "bench_search_step.json", "bench_blocks.json",
              "bench_blocks.md", "bench_blocks_stages.png", "bench_full.json", "summary.md", "build.log",
              "pytest_gpu.log", "bench_search_step.log"}


def _suite(out, work, *args, env_extra=None):
    env = {**os.environ, "PYTHON": sys.executable, **(env_extra or {})}
    env.pop("GPU_SUITE_DRY", None)
    return subprocess.run(["bash", str(SCRIPT), str(out), "--work", str(work), *args], capture_output=True,
                          text=True, env=env, timeout=SUBPROCESS_TIMEOUT_S)


def _members(archive):
    with tarfile.open(archive) as tar:
        return {m.name.removeprefix("results/") for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_suite")
    proc = _suite(root / "out", root / "work", "--dry")
    return root, proc


def test_dry_run_writes_two_files_with_every_record_archived(dry_run):
    root, proc = dry_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    files = sorted(p.name for p in (root / "out").iterdir())
    assert files == ["results.tar.gz", "summary.md"] and len(files) <= MAX_OUT_FILES
    members = _members(root / "out" / "results.tar.gz")
    assert WORK_FILES <= members, sorted(WORK_FILES - members)
    steps = json.loads((root / "work" / "steps.json").read_text())
    assert [s["step"] for s in steps] == ["build", "versions", "warm", "pytest_gpu", "bench_weighted_sum",
                                          "bench_dwconv_se", "bench_search_step", "bench_blocks", "bench_full",
                                          "pytest_rest"]
    assert all(s["rc"] == 0 for s in steps), steps
    summary = (root / "out" / "summary.md").read_text()
    for heading in ("DRY RUN", "## Versions", "## Steps", "## Tests", "## Compile and autotune", "## weighted_sum",
                    "## dwconv_se", "## Search step", "## MBConv vs Fused-MBConv", "## Regression suite"):
        assert heading in summary, heading
    assert "not written" not in summary and "could not be summarised" not in summary
    warm = json.loads((root / "work" / "warm.json").read_text())["records"]
    assert warm and all(r["error"] == "" and r["compile_s"] >= 0 for r in warm)
    for name in ("bench_weighted_sum", "bench_dwconv_se", "bench_search_step"):
        doc = json.loads((root / "work" / f"{name}.json").read_text())
        assert doc["complete"] and doc["ceiling"]["bytes_per_s"] > 0 and doc["ceiling"]["matmul_flops_per_s"] > 0


def test_a_phase_alone_adds_to_the_work_directory_and_packs_again(dry_run):
    root, _ = dry_run
    proc = _suite(root / "out", root / "work", "--dry", "--phase", "build")
    assert proc.returncode == 0, proc.stdout[-3000:]
    steps = [s["step"] for s in json.loads((root / "work" / "steps.json").read_text())]
    assert steps[-3:] == ["build", "versions", "warm"] and "bench_blocks" in steps  # replaced, others kept
    assert sorted(p.name for p in (root / "out").iterdir()) == ["results.tar.gz", "summary.md"]
    assert "bench_blocks.json" in _members(root / "out" / "results.tar.gz")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the suite would run")
def test_without_a_gpu_it_says_so_and_stops(tmp_path):
    proc = _suite(tmp_path / "out", tmp_path / "work")
    assert proc.returncode == 3
    assert "sees no CUDA device; nothing run" in proc.stdout
    assert "sees no CUDA device" in (tmp_path / "out" / "summary.md").read_text()
    assert not (tmp_path / "work").exists()


def test_missing_python_is_named(tmp_path):
    proc = _suite(tmp_path / "out", tmp_path / "work", env_extra={"PYTHON": "no-such-python3"})
    assert proc.returncode == 2 and "no 'no-such-python3' on PATH" in proc.stderr


def test_dry_runs_have_no_speed_bounds(tmp_path):
    dry = gpu_suite.parse_args([str(tmp_path / "o"), "--work", str(tmp_path / "w"), "--dry"])
    assert dry.budget == gpu_suite.DRY_BUDGET_S
    assert gpu_suite.parse_args([str(tmp_path / "o"), "--work", str(tmp_path / "w")]).budget == 480


def test_usage_errors(tmp_path, capsys):
    for argv, message in (([str(tmp_path), "--phase", "nope"], "invalid choice"),
                          ([str(tmp_path), "--budget", "0"], "--budget must be"),
                          ([str(tmp_path), "--work", str(tmp_path / "w")], "outside OUTDIR")):
        with pytest.raises(SystemExit) as info:
            gpu_suite.parse_args(argv)
        assert info.value.code == 2 and message in capsys.readouterr().err


def _bare_suite(tmp_path, budget):
    # Not --dry: a dry suite replaces every cap by the hang guard, and the caps are under test.
    args = gpu_suite.parse_args([str(tmp_path / "out"), "--work", str(tmp_path / "work"), "--budget", str(budget)])
    args.work.mkdir()
    return gpu_suite.Suite(args)


def test_a_step_past_its_cap_is_interrupted_and_recorded(tmp_path):
    s = _bare_suite(tmp_path, budget=1000)
    rec = s.step("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], cap_s=1.0, min_s=0.5)
    assert rec["rc"] == 124 and rec["note"].startswith("timed out after 1 s")
    ok = s.step("quick", [sys.executable, "-c", "print('hello')"], cap_s=SUBPROCESS_TIMEOUT_S)
    assert ok["rc"] == 0 and (tmp_path / "work" / "quick.log").read_text() == "hello\n"
    saved = json.loads((tmp_path / "work" / "steps.json").read_text())
    assert [r["step"] for r in saved] == ["sleeper", "quick"]
    # Packed after every step: a killed device call still returns what ran so far.
    assert {"steps.json", "quick.log", "sleeper.log"} <= _members(tmp_path / "out" / "results.tar.gz")
    assert "| quick | 0 |" in (tmp_path / "out" / "summary.md").read_text()


def test_a_spent_budget_skips_the_step(tmp_path):
    s = _bare_suite(tmp_path, budget=gpu_suite.PACK_RESERVE_S)  # nothing left beyond the packing reserve
    rec = s.step("late", [sys.executable, "-c", "raise SystemExit(1)"], cap_s=60)
    assert rec["rc"] is None and rec["note"].startswith("skipped:")
    assert not (tmp_path / "work" / "late.log").exists()


# ----------------------------------------------------------------------------- summary verdicts

def _ws(mode, provider, k, m, median, pct, vs_eager, vs_compile, dtype="bfloat16"):
    return {"name": f"weighted_sum/{mode}", "provider": provider, "status": "ok", "dtype": dtype,
            "params": {"K": k, "M": m}, "median_s": median, "pct_of_ceiling": pct, "vs_eager": vs_eager,
            "vs_compile": vs_compile}


def _dw(provider, layer, n, median, model_pct=None):
    return {"name": "dwconv_se/forward+backward", "provider": provider, "status": "ok",
            "params": {"layer": layer, "N": n}, "median_s": median, "model_pct": model_pct, "pct_of_ceiling": 10.0}


def test_summary_verdicts_on_synthetic_gpu_records(tmp_path):
    ceiling = {"bytes_per_s": 4.3e12, "matmul_flops_per_s": 7.9e14, "matmul_dtype": "bfloat16"}
    env = {"device_name": "NVIDIA H200"}
    ws = [_ws("forward", "triton", 8, 1 << 26, 1e-3, 90.0, 4.5, 1.4),   # meets all three
          _ws("backward", "triton", 8, 1 << 26, 2e-3, 70.0, 3.5, 1.1),  # misses % and × compile
          _ws("forward", "triton", 8, 1 << 20, 1e-5, 20.0, 1.0, 1.0),   # small M: information only
          _ws("forward", "eager", 8, 1 << 26, 5e-3, 20.0, 1.0, 0.3)]    # not the fused kernel: not listed
    dw = [_dw("eager_cl", "v2s.s4", 128, 3e-3), _dw("eager_nchw", "v2s.s4", 128, 4e-3),
          _dw("compile", "v2s.s4", 128, 1.5e-3), _dw("triton", "v2s.s4", 128, 1e-3, model_pct=75.0),
          _dw("eager_cl", "b0.s2", 32, 1e-3), _dw("triton", "b0.s2", 32, 1e-3, model_pct=10.0)]
    steps = [{"params": {"config": "seed", "order": 1}, "dtype": "float32", "layout": "nchw", "status": "ok",
              "median_s": 0.1, "images_per_s": 640.0, "aten_ops": 8000, "host_syncs": 2, "kernel_launches": 7000,
              "gpu_busy_pct": 30.0},
             {"params": {"config": "seed", "order": 2}, "dtype": "float32", "layout": "nchw", "status": "ok",
              "median_s": 0.3, "images_per_s": 213.0, "aten_ops": 20000, "host_syncs": 0, "kernel_launches": 18000,
              "gpu_busy_pct": 25.0}]
    for name, records in (("bench_weighted_sum", ws), ("bench_dwconv_se", dw), ("bench_search_step", steps)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"complete": name != "bench_dwconv_se", "ceiling": ceiling,
                                                           "environment": env, "records": records}))
    text = gpu_summary.summarise(tmp_path)
    assert "copy 4300.0 GB/s, bfloat16 matmul 790.0 TFLOP/s" in text
    assert "| forward | bfloat16 | 8 | 2^26 | 1000.0 | 90.0 | 4.50 | 1.40 | pass | pass | pass |" in text
    assert "| backward | bfloat16 | 8 | 2^26 | 2000.0 | 70.0 | 3.50 | 1.10 | MISS | pass | MISS |" in text
    assert "| forward | bfloat16 | 8 | 2^20 | 10.0 | 20.0 | 1.00 | 1.00 | (info) | (info) | (info) |" in text
    assert text.count("| forward | bfloat16 |") == 2  # the eager record is not a row
    # dwconv_se: 3.0/1.0 = 3× eager CL (≥ 2.5: pass), model 75% (≥ 70: pass); B0 at batch 32 is info
    assert "| v2s.s4 | 128 | triton | 1000.0 | 3.00 | 4.00 | 1.50 | 75.0 | 10.0 | pass | pass |" in text
    assert "| b0.s2 | 32 | triton | 1000.0 | 1.00 | – | – | 10.0 | 10.0 | (info) | (info) |" in text
    assert "INCOMPLETE run" in text  # the dwconv_se document was marked incomplete
    # search step: 8000 ops ≤ 9000 pass, 2 syncs MISS; order 2 is 2.5× the first > 2.2: MISS, 0 syncs pass
    assert "| seed | 1 | float32 | nchw | 100.00 | 640 | 8000 | 2 | 7000 | 30.0 | pass | MISS |" in text
    assert "| seed | 2 | float32 | nchw | 300.00 | 213 | 20000 | 0 | 18000 | 25.0 | MISS | pass |" in text
    assert "versions.json: not written" in text and "no junit report" in text  # missing files are said


def test_summary_survives_a_broken_file(tmp_path):
    (tmp_path / "bench_weighted_sum.json").write_text("{broken")
    (tmp_path / "bench_dwconv_se.json").write_text(json.dumps({"records": [{"no": "fields"}]}))
    text = gpu_summary.summarise(tmp_path)
    assert "bench_weighted_sum.json: unreadable" in text
    assert "## dwconv_se_section: could not be summarised (KeyError" in text
    assert "## Search step" in text  # the sections after it are still there
