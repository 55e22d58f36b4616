#!/bin/bash
# Real end-to-end bench ab runs (issue 19 evidence), batches 2 and 3 (real_runs_2/, real_runs_3/):
# rounds of (A/A full suite, planted 10%, planted 20%) interleaved so machine drift hits all
# kinds alike. Both sides are temporary worktrees of COMMIT, bench ab's defaults as in CI
# (2 rounds + escalation as that commit does it). The planted runs time only the planted
# benchmark (--only dwconv_se/forward: each benchmark's verdict uses its own processes
# alone), ~1 min instead of ~2.5. Run from the repository root:
#   bash benchmarks/results/2026-12-01-cpu-bench-ab/real_runs.sh COMMIT ROUNDS OUT
# (batch 2: 73eecc5efce431f32b83ad54d150eb005b9cd55a 20 /tmp/ab19b, stopped after 10 rounds;
#  batch 3: 4087df4f49af2c51cec35a82920a1dd576160ba3 20 /tmp/ab19c)
set -u
C=$(git rev-parse --verify "${1:?COMMIT}^{commit}") || exit 2
ROUNDS=${2:?ROUNDS}
OUT=${3:?OUT}
mkdir -p "$OUT"
for r in $(seq 1 "$ROUNDS"); do
  for kind in aa p10 p20; do
    case $kind in
      aa) plant=""; only="" ;;
      p10) plant="dwconv_se/forward:0.1"; only="--only dwconv_se/forward" ;;
      p20) plant="dwconv_se/forward:0.2"; only="--only dwconv_se/forward" ;;
    esac
    start=$(date +%s)
    flock /tmp/dartsfast-timing.lock env ${plant:+DARTSFAST_BENCH_PLANT_SLOWDOWN=$plant} \
      .venv/bin/python -m dartsfast bench ab --base "$C" --head "$C" $only --out "$OUT/run-$r-$kind.json" \
      > "$OUT/run-$r-$kind.log" 2>&1
    rc=$?
    echo "{\"round\": $r, \"kind\": \"$kind\", \"plant\": \"$plant\", \"exit\": $rc, \"seconds\": $(( $(date +%s) - start ))}" >> "$OUT/runs.jsonl"
  done
done
echo finished >> "$OUT/runs.jsonl"
