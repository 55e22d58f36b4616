"""Everything a short GPU slot must produce, in phases that fit it (DESIGN.md §7, issue 12).

    bash benchmarks/gpu_suite.sh OUTDIR [--phase build|test|bench|all] [--dry]

The GPU machines are lent for 15 minutes of device time per task, ≤ 10 minutes a command,
and return at most 8 files from OUTDIR. So:

- every step runs as a subprocess with its own cap, cut further to what is left of the
  phase budget (``GPU_SUITE_BUDGET_S``, default 480 s for ``all``); a step past its cap gets
  SIGINT (pytest then writes its junit report, the benchmark scripts their records marked
  incomplete), then SIGKILL 15 s later;
- steps run most important first: build, kernel warm-up (compile times apart), the GPU
  tests, the op benchmarks, the search step, the block sweep, the regression suite, and
  the rest of the test suite last with whatever time is left;
- all output goes to a work directory (``GPU_SUITE_WORK``, default /tmp/dartsfast-gpu-suite),
  and after every phase OUTDIR gets exactly two files: ``summary.md`` (versions, tests,
  one table per benchmark with its targets and verdicts; ``gpu_summary.py``) and
  ``results.tar.gz`` (every JSON record, report and log). A phase run alone adds to the
  work directory of the phases before it (same machine) and packs it all again.

Dry mode (``--dry`` or ``GPU_SUITE_DRY=1``) runs every phase on the CPU at tiny sizes
(no extension rebuild, a small test selection, ``--quick`` benchmarks) so the script is
tested before a slot; ``tests/test_gpu_suite.py`` runs it. Its caps are a 15-minute hang
guard and its benchmarks have no time budget: it checks plumbing, never speed. Without ``--dry`` and without a
CUDA device the suite says so in one line (and in summary.md) and exits 3 at once.
Exit status: 0 when every step passed, 1 when some step failed or timed out, 2 on usage.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu_summary  # noqa: E402  (benchmarks/gpu_summary.py: stdlib only)

PHASES = ("build", "test", "bench")
OUT_FILES = ("summary.md", "results.tar.gz")
DEFAULT_BUDGET_S = 480.0  # 8 minutes for `all`, inside the 10-minute command limit
# Dry runs check plumbing, not speed: on a busy CPU runner any wall-clock cap could cut a
# step short and fail the test for nothing (issue 11), so there every cap is this hang guard
# and the budget is an hour.
DRY_CAP_S, DRY_BUDGET_S = 900.0, 3600.0
PACK_RESERVE_S = 20.0  # kept back from the last step for the summary and the archive
KILL_GRACE_S = 15.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--phase", choices=(*PHASES, "all"), default="all")
    p.add_argument("--dry", action="store_true", default=os.environ.get("GPU_SUITE_DRY", "") not in ("", "0"),
                   help="run every phase on the CPU at tiny sizes (also GPU_SUITE_DRY=1)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the phases run (default 480, 3600 dry; GPU_SUITE_BUDGET_S)")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("GPU_SUITE_WORK", "/tmp/dartsfast-gpu-suite")))
    args = p.parse_args(argv)
    if args.budget is None:
        args.budget = float(os.environ.get("GPU_SUITE_BUDGET_S", DRY_BUDGET_S if args.dry else DEFAULT_BUDGET_S))
    if not args.budget > 0:
        p.error(f"--budget must be > 0 seconds, got {args.budget}")
    if args.outdir.exists() and not args.outdir.is_dir():
        p.error(f"OUTDIR {args.outdir} exists and is not a directory")
    if args.work.resolve() == args.outdir.resolve() or args.outdir.resolve() in args.work.resolve().parents:
        p.error("the work directory must lie outside OUTDIR: only the summary and the archive go there")
    return args


class Suite:
    """Runs steps under one budget and records each in ``steps.json`` of the work directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.work, self.dry = args, args.work, args.dry
        self.deadline = time.monotonic() + args.budget
        self.py = sys.executable
        steps_file = self.work / "steps.json"
        self.steps: list[dict] = json.loads(steps_file.read_text()) if steps_file.exists() else []

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def step(self, name: str, cmd: list[str], cap_s: float, env: dict | None = None, min_s: float = 5.0) -> dict:
        """Run ``cmd`` (log: ``<name>.log``) for at most min(cap_s, budget left − reserve)."""
        limit = min(DRY_CAP_S if self.dry else cap_s, self.left() - PACK_RESERVE_S)
        record = {"step": name, "rc": None, "seconds": 0.0, "cap_s": round(max(limit, 0.0), 1), "note": ""}
        self.steps = [s for s in self.steps if s["step"] != name]  # a rerun replaces the old entry
        self.steps.append(record)
        if limit < min_s:
            record["note"] = f"skipped: {max(self.left(), 0):.0f} s of the budget left"
            print(f"[gpu_suite] {name}: {record['note']}", flush=True)
            self._save()
            return record
        print(f"[gpu_suite] {name} (cap {limit:.0f} s): {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        with open(self.work / f"{name}.log", "w") as log:
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
            try:
                record["rc"] = proc.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                # SIGINT first: pytest writes its report, the benchmarks write what they measured.
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(timeout=KILL_GRACE_S)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                record["rc"] = 124
                record["note"] = f"timed out after {limit:.0f} s"
        record["seconds"] = round(time.monotonic() - t0, 1)
        print(f"[gpu_suite] {name}: rc={record['rc']} in {record['seconds']:.0f} s {record['note']}", flush=True)
        self._save()
        # Packed after every step (~1 s): if the device call itself is killed at its limit,
        # OUTDIR still holds everything up to the last finished step.
        pack(self.args)
        return record

    def _save(self) -> None:
        gpu_summary.write_text_atomic(self.work / "steps.json", json.dumps(self.steps, indent=1))


def build_phase(s: Suite) -> None:
    if s.dry:  # no rebuild on a CPU machine: only check the package imports and say how the extension stands
        s.step("build", [s.py, "-c", "import dartsfast._ext as e; print('extension:', e.HAS_EXT, e.WHY_NOT)"], 180)
    else:
        # One architecture (the H200's 9.0) halves nvcc's work; DARTSFAST_BUILD_CUDA=1 fails
        # loudly instead of installing without the extension.
        env = {"DARTSFAST_BUILD_CUDA": "1", "TORCH_CUDA_ARCH_LIST": os.environ.get("TORCH_CUDA_ARCH_LIST", "9.0")}
        s.step("build", [s.py, "-m", "pip", "install", "-e", ".", "--no-deps", "--no-build-isolation", "-v"],
               180, env=env)
    s.step("versions", [s.py, str(REPO / "benchmarks" / "gpu_versions.py"), str(s.work / "versions.json")], 60)
    # JIT compiles and autotuning of every kernel, timed apart from the benchmarks (which
    # then load the compiled kernels from Triton's on-disk cache).
    s.step("warm", [s.py, str(REPO / "benchmarks" / "warm_kernels.py"), "--out", str(s.work / "warm.json"),
                    *(["--device", "cpu"] if s.dry else [])], 120)


def test_phase(s: Suite) -> None:
    base = [s.py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts="]
    # The kernel tests (gpu and interpreter markers run on the GPU there) come first; dry mode
    # runs one small file so the junit plumbing is exercised in seconds.
    kernel_sel = ["tests/test_backend.py"] if s.dry else ["-m", "gpu or interpreter", *_parallel()]
    s.step("pytest_gpu", [*base, *kernel_sel, "--junitxml", str(s.work / "pytest_gpu.xml")], 180)


def _parallel() -> list[str]:
    """pytest-xdist workers where it is installed (the GPU image has it): the kernel tests
    spend most of their time compiling Triton variants, one CPU core each, and the 16 cores
    there would otherwise idle. Four workers share the GPU's memory comfortably."""
    return ["-n", "4"] if importlib.util.find_spec("xdist") is not None else []


def rest_of_tests(s: Suite) -> None:
    """The CPU part of the suite, with whatever time is left (CI runs it on every change)."""
    sel = ["tests/test_timing.py"] if s.dry else ["-m", "not gpu and not interpreter and not timing",
                                                             *_parallel()]
    s.step("pytest_rest", [s.py, "-m", "pytest", "-v", "-p", "no:cacheprovider", "-o", "addopts=", *sel,
                           "--junitxml", str(s.work / "pytest_rest.xml")], 600, min_s=30)


def bench_phase(s: Suite) -> None:
    tiny = ["--device", "cpu", "--quick", "--repeats", "2", "--warmup", "1"] if s.dry else []
    bench = REPO / "benchmarks"
    for name, cap in (("bench_weighted_sum", 80), ("bench_dwconv_se", 100), ("bench_search_step", 70),
                      ("bench_blocks", 100)):
        # The script's own budget ends it 20 s before the cap, so it writes its records itself
        # (dry: no budget, every tiny case is measured whatever the load).
        budget = ["--max-seconds", "1e9" if s.dry else str(max(cap - 20, 10))]
        s.step(name, [s.py, str(bench / f"{name}.py"), "--out", str(s.work / f"{name}.json"), *tiny, *budget], cap)
    suite = ["--suite", "quick", "--pairs-scale", "0.02", "--rounds", "1"] if s.dry else ["--suite", "full"]
    s.step("bench_full", [s.py, "-m", "dartsfast", "bench", "run", *suite, "--max-seconds", "1e9" if s.dry else "20",
                          "--out", str(s.work / "bench_full.json")], 45)


def pack(args: argparse.Namespace) -> list[Path]:
    """OUTDIR/summary.md and OUTDIR/results.tar.gz (the whole work directory)."""
    args.outdir.mkdir(parents=True, exist_ok=True)
    summary = gpu_summary.summarise(args.work, dry=args.dry)
    gpu_summary.write_text_atomic(args.work / "summary.md", summary)
    gpu_summary.write_text_atomic(args.outdir / "summary.md", summary)
    tmp = args.outdir / ".results.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for path in sorted(args.work.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=f"results/{path.relative_to(args.work)}")
    os.replace(tmp, args.outdir / "results.tar.gz")
    return [args.outdir / name for name in OUT_FILES]


def no_gpu_line() -> str | None:
    """None when torch sees a CUDA device, else the reason in one line."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return f"python {sys.executable} cannot import torch ({exc}); set PYTHON to the interpreter that has it"
    if not torch.cuda.is_available():
        return (f"torch {torch.__version__} ({sys.executable}) sees no CUDA device; nothing run "
                f"(GPU_SUITE_DRY=1 runs every phase on the CPU at tiny sizes)")
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.dry:
        why = no_gpu_line()
        if why is not None:
            print(f"gpu_suite: {why}", flush=True)
            args.outdir.mkdir(parents=True, exist_ok=True)
            # Plain write: the atomic helper imports dartsfast, hence torch, which may be what failed.
            (args.outdir / "summary.md").write_text(f"# dartsfast GPU suite\n\n{why}\n")
            return 3
    if args.phase == "all" and args.work.exists():
        shutil.rmtree(args.work)  # a full run starts clean; a single phase adds to what is there
    args.work.mkdir(parents=True, exist_ok=True)
    if args.dry:  # Triton kernels on CPU tensors go through the interpreter
        os.environ.setdefault("TRITON_INTERPRET", "1")
    else:  # real kernels on the GPU
        os.environ.pop("TRITON_INTERPRET", None)
    s = Suite(args)
    phases = PHASES if args.phase == "all" else (args.phase,)

    def on_sigterm(signum, frame):  # a caller's timeout: still pack what was measured
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for phase in phases:
            {"build": build_phase, "test": test_phase, "bench": bench_phase}[phase](s)
        if args.phase in ("all", "test"):
            rest_of_tests(s)
    finally:
        files = pack(args)
    print(f"[gpu_suite] wrote {', '.join(str(f) for f in files)}")
    print((args.outdir / "summary.md").read_text())
    failed = [st["step"] for st in s.steps if st["rc"] not in (0, None)]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
