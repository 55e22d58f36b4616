#!/usr/bin/env bash
# benchmarks/gpu_suite.sh OUTDIR [--phase build|test|bench|all] [--dry]
# Everything a short GPU slot must produce; the work is in benchmarks/gpu_suite.py (its
# docstring has the phases, caps and outputs). OUTDIR gets summary.md and results.tar.gz.
# Uses $PYTHON, else python3 (the GPU machine's interpreter with torch; no venv assumed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! command -v "$PY" > /dev/null; then
  echo "gpu_suite: no '$PY' on PATH; set PYTHON to the interpreter that has torch" >&2
  exit 2
fi
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
exec "$PY" benchmarks/gpu_suite.py "$@"
