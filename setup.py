"""Build script for the optional CUDA extension ``dartsfast._C``.

Metadata lives in pyproject.toml; this file only adds the extension.  Controlled by
``DARTSFAST_BUILD_CUDA``:

* ``auto`` (default): build when nvcc is found (``$CUDA_HOME``, /usr/local/cuda, or
  ``nvcc`` on PATH) and torch is a CUDA build; otherwise print one line saying why and
  install the pure-Python package (the Triton and torch backends still work).
* ``0``: never build.   * ``1``: build or fail with the reason.

Usage: ``pip install --no-build-isolation -e .`` (build against the torch you have;
an isolated build would download a second torch just to compile against).
Other knobs: ``TORCH_CUDA_ARCH_LIST`` (default "8.0;9.0": A100, H100/H200) and
``MAX_JOBS`` (default: derived from cores and free memory).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
MODE = os.environ.get("DARTSFAST_BUILD_CUDA", "auto").strip().lower()
# Commands that compile; metadata-only runs (egg_info, dist_info) stay quiet.
BUILD_COMMANDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def read_sources() -> list[str]:
    """csrc/sources.txt: the one list of extension sources, shared with CMakeLists.txt."""
    lines = (CSRC / "sources.txt").read_text().splitlines()
    return [f"csrc/{s.strip()}" for s in lines if s.strip() and not s.lstrip().startswith("#")]


def find_nvcc() -> str | None:
    candidates = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"]
    for home in filter(None, candidates):
        nvcc = Path(home) / "bin" / "nvcc"
        if nvcc.is_file():
            return str(nvcc)
    return shutil.which("nvcc")


def nvcc_release(nvcc: str) -> str | None:
    try:
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+)\.(\d+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def why_not_build() -> str:
    """Empty string when the extension can be built here, else the reason it cannot."""
    if MODE == "0":
        return "DARTSFAST_BUILD_CUDA=0"
    try:
        import torch
    except ImportError as e:
        return f"torch is not importable ({e}); install torch first and use --no-build-isolation"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is not a CUDA build"
    nvcc = find_nvcc()
    if nvcc is None:
        return "nvcc not found (set CUDA_HOME or put nvcc on PATH)"
    release = nvcc_release(nvcc)
    if release is None:
        return f"could not run {nvcc} --version"
    # torch's cpp_extension refuses a different CUDA major version at build time; say so now.
    if release.split(".")[0] != torch.version.cuda.split(".")[0]:
        return f"nvcc {release} ({nvcc}) and torch's CUDA {torch.version.cuda} differ in major version"
    # cpp_extension reads CUDA_HOME when it is imported: point it at the nvcc we found.
    os.environ.setdefault("CUDA_HOME", str(Path(nvcc).resolve().parent.parent))
    return ""


def default_max_jobs() -> int:
    """nvcc + cicc peak at several GB per job on torch headers: ~5 GB per job, >= 1."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        meminfo = Path("/proc/meminfo").read_text()
        avail_gb = int(re.search(r"MemAvailable:\s+(\d+) kB", meminfo).group(1)) / 2**20
    except (OSError, AttributeError):
        avail_gb = 5.0
    return max(1, min(cores, int(avail_gb // 5)))


def extension_kwargs() -> dict:
    if MODE not in ("auto", "0", "1"):
        raise RuntimeError(f"DARTSFAST_BUILD_CUDA={MODE!r}: expected auto, 0 or 1")
    reason = why_not_build()
    building = bool(set(sys.argv[1:]) & BUILD_COMMANDS)
    if reason:
        if MODE == "1":
            raise RuntimeError(f"dartsfast: DARTSFAST_BUILD_CUDA=1 but the CUDA extension cannot be built: {reason}")
        if building:
            print(f"dartsfast: building without the CUDA extension ({reason})", file=sys.stderr, flush=True)
        return {}

    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")  # sm_80 (A100), sm_90 (H100/H200)
    os.environ.setdefault("MAX_JOBS", str(default_max_jobs()))
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    if building:
        print(f"dartsfast: building the CUDA extension dartsfast._C for "
              f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']} with MAX_JOBS={os.environ['MAX_JOBS']}",
              file=sys.stderr, flush=True)
    ext = CUDAExtension(
        name="dartsfast._C",
        sources=read_sources(),
        include_dirs=[str(CSRC)],
        define_macros=[("DARTSFAST_PYTHON_MODULE", None)],  # PyInit__C only in the Python build
        extra_compile_args={
            "cxx": ["-O3"],
            # No --use_fast_math: its approximate division/denormal flushing would cost
            # accuracy against the fp32 <= 1e-5 tolerance.  -lineinfo: source lines in
            # Nsight Compute / compute-sanitizer reports at no runtime cost.
            "nvcc": ["-O3", "-lineinfo"],
        },
    )
    return {"ext_modules": [ext], "cmdclass": {"build_ext": BuildExtension.with_options(use_ninja=True)}}


setup(**extension_kwargs())
