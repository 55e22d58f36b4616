#!/usr/bin/env bash
# benchmarks/gpu_suite.sh OUTDIR -- everything a short GPU slot should produce (DESIGN.md §7):
#   1. build the CUDA extension against the torch/triton already installed (no downloads)
#   2. the whole test suite, gpu tests included          -> OUTDIR/pytest.xml, pytest.log
#   3. every benchmarks/bench_*.py                        -> OUTDIR/<name>.json, <name>.log
#   4. OUTDIR/versions.json and OUTDIR/summary.md (written even when steps fail)
# Budget: 9 min per slot; every step gets a timeout cut from GPU_SUITE_BUDGET_S (default
# 510 s, leaving 30 s of slack).  Exit status: non-zero if any step failed.
set -euo pipefail

OUT=${1:?usage: benchmarks/gpu_suite.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUDGET=${GPU_SUITE_BUDGET_S:-510}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
unset TRITON_INTERPRET  # real Triton kernels on the GPU
STATUS="$OUT/steps.tsv"  # step <TAB> rc <TAB> seconds <TAB> note
printf 'step\trc\tseconds\tnote\n' > "$STATUS"
log() { echo "[gpu_suite ${SECONDS}s] $*" >&2; }
left() { local l=$((BUDGET - SECONDS)); echo $((l > 10 ? l : 10)); }
cap() { local l; l=$(left); echo $(($1 < l ? $1 : l)); }  # min(step cap, time left)
step() {  # step NAME CAP_S LOGFILE CMD...: run with a timeout, record rc, never abort
  local name=$1 limit t0=$SECONDS rc=0
  limit=$(cap "$2")
  log "$name (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" "${@:4}" > "$3" 2>&1 || rc=$?
  [[ $rc == 124 || $rc == 137 ]] && note="timed out after ${limit}s" || note=""
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" "$note" >> "$STATUS"
  log "$name: rc=$rc in $((SECONDS - t0))s"
  return 0
}

# 1. Build: ~30 s with nvcc on 16 cores.  DARTSFAST_BUILD_CUDA=1 fails loudly, not silently
#    falling back to a build without the extension.
step build 240 "$OUT/build.log" env DARTSFAST_BUILD_CUDA=1 \
  "$PY" -m pip install -e . --no-deps --no-build-isolation -v

# Versions first, so a later failure still leaves them.
"$PY" - "$OUT/versions.json" <<'PYEOF' || log "versions.json: failed"
import datetime, json, os, platform, subprocess, sys
def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception:
        return ""
v = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
     "python": platform.python_version(),
     "git_commit": run("git", "rev-parse", "HEAD"),
     "git_dirty": bool(run("git", "status", "--porcelain", "--untracked-files=no")),
     "driver": run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader").split("\n")[0],
     "nvcc": run(os.path.join(os.environ.get("CUDA_HOME", ""), "bin", "nvcc"), "--version").split("\n")[-1]}
try:
    import torch
    v.update(torch=torch.__version__, cuda=torch.version.cuda,
             gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
             capability=".".join(map(str, torch.cuda.get_device_capability(0))) if torch.cuda.is_available() else "")
except Exception as e:
    v["torch"] = f"import failed: {e}"
try:
    import triton
    v["triton"] = triton.__version__
except Exception as e:
    v["triton"] = f"import failed: {e}"
try:
    from dartsfast import _ext
    v["dartsfast_ext"] = "built" if _ext.HAS_EXT else _ext.WHY_NOT
except Exception as e:
    v["dartsfast_ext"] = f"import failed: {e}"
json.dump(v, open(sys.argv[1], "w"), indent=2)
PYEOF

# 2. All tests, gpu included.  A failure is recorded, not fatal: the summary must exist.
step pytest 300 "$OUT/pytest.log" "$PY" -m pytest -m "gpu or not gpu" -q -p no:cacheprovider \
  --junitxml "$OUT/pytest.xml"

# 3. ---- Benchmarks plug in here ----------------------------------------------------
# Every benchmarks/bench_<name>.py is run as `python benchmarks/bench_<name>.py --out
# OUTDIR/bench_<name>.json` (its own timing, repeats and record format: DESIGN.md §8);
# they share whatever is left of the budget.  Add a file; nothing here needs editing.
shopt -s nullglob
for bench in benchmarks/bench_*.py; do
  name=$(basename "$bench" .py)
  step "$name" 240 "$OUT/$name.log" "$PY" "$bench" --out "$OUT/$name.json"
done
shopt -u nullglob

# 3b. Regression tracking (README "Tracking benchmark regressions in CI"): `dartsfast bench run
#     --suite full` -> OUTDIR/bench_full.json, then compared with benchmarks/baselines/<gpu>.json
#     if one is committed (none yet: compare says so and passes).  At most 60 s, and only when
#     60 s of the budget are left: --max-seconds 30 stops starting benchmark rounds after 30 s,
#     leaving the rest for CUDA start-up, Triton compiles and writing the JSON.
if (( BUDGET - SECONDS >= 60 )); then
  step bench_full 60 "$OUT/bench_full.log" bash -c \
    '"$0" -m dartsfast bench run --suite full --max-seconds 30 --out "$1" &&
     "$0" -m dartsfast bench compare benchmarks/baselines "$1" --json "${1%.json}_verdicts.json"' \
    "$PY" "$OUT/bench_full.json"
else
  printf 'bench_full\t0\t0\tskipped: less than 60 s of the budget left\n' >> "$STATUS"
  log "bench_full: skipped, less than 60 s of the budget left"
fi

# 4. Summary.
"$PY" - "$OUT" <<'PYEOF'
import csv, json, os, sys
import xml.etree.ElementTree as ET
out = sys.argv[1]
lines = ["# dartsfast GPU suite", ""]
try:
    v = json.load(open(os.path.join(out, "versions.json")))
except Exception as e:
    v = {"versions.json": f"missing ({e})"}
lines += ["| | |", "|---|---|"] + [f"| {k} | {val} |" for k, val in v.items()] + [""]
try:
    root = ET.parse(os.path.join(out, "pytest.xml")).getroot()
    s = root if root.tag == "testsuite" else root.find("testsuite")
    n, f, e, sk = (int(s.get(a, 0)) for a in ("tests", "failures", "errors", "skipped"))
    lines += ["## Tests", "", "| passed | failed | errors | skipped | seconds |", "|---|---|---|---|---|",
              f"| {n - f - e - sk} | {f} | {e} | {sk} | {float(s.get('time', 0)):.0f} |", ""]
    bad = [f"{c.get('classname')}::{c.get('name')}" for c in s.iter("testcase")
           if c.find("failure") is not None or c.find("error") is not None]
    lines += [f"- FAILED {t}" for t in bad[:30]] + ([f"- ... and {len(bad) - 30} more"] if len(bad) > 30 else [])
    lines += [""] if bad else []
except Exception as e:
    lines += ["## Tests", "", f"no junit report ({e}); see pytest.log", ""]
lines += ["## Steps", "", "| step | rc | seconds | note |", "|---|---|---|---|"]
with open(os.path.join(out, "steps.tsv")) as fh:
    for r in csv.DictReader(fh, delimiter="\t"):
        lines.append(f"| {r['step']} | {r['rc']} | {r['seconds']} | {r['note']} |")
open(os.path.join(out, "summary.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF

log "done; results in $OUT"
# Non-zero when any step failed (the summary is already written).
failed=$(awk -F'\t' 'NR > 1 && $2 != 0' "$STATUS" | wc -l)
exit $((failed > 0))
