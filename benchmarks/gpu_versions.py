"""Write the versions a GPU-suite result depends on to a JSON file (never fails: a field
that cannot be read says why). ``python benchmarks/gpu_versions.py OUT.json``"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict:
    v = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
         "python": platform.python_version(), "executable": sys.executable,
         "git_commit": _run("git", "rev-parse", "HEAD"),
         "git_dirty": bool(_run("git", "status", "--porcelain", "--untracked-files=no")),
         "driver": _run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader").split("\n")[0],
         "nvcc": _run(os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin", "nvcc"),
                      "--version").split("\n")[-1],
         "cpu_count": os.cpu_count()}
    try:
        import torch

        cuda = torch.cuda.is_available()
        v.update(torch=torch.__version__, cuda=torch.version.cuda or "",
                 gpu=torch.cuda.get_device_name(0) if cuda else "none",
                 capability=".".join(map(str, torch.cuda.get_device_capability(0))) if cuda else "",
                 sm_count=torch.cuda.get_device_properties(0).multi_processor_count if cuda else None)
    except Exception as exc:  # noqa: BLE001
        v["torch"] = f"import failed: {exc}"
    for name in ("triton", "torchvision"):
        try:
            v[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001
            v[name] = f"import failed: {exc}"
    try:
        from dartsfast import _ext

        v["dartsfast_ext"] = "built" if _ext.HAS_EXT else _ext.WHY_NOT
    except Exception as exc:  # noqa: BLE001
        v["dartsfast_ext"] = f"import failed: {exc}"
    return v


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/gpu_versions.py OUT.json")
    # Written whole or not at all, without importing dartsfast (whose import may be what failed).
    tmp = f"{sys.argv[1]}.tmp"
    Path(tmp).write_text(json.dumps(versions(), indent=1) + "\n")
    os.replace(tmp, sys.argv[1])
