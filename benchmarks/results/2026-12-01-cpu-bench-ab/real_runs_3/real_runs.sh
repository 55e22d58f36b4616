#!/bin/bash
# Real end-to-end bench ab runs (issue 19 evidence), third batch (adaptive escalation, up to 6 rounds): rounds of (A/A full suite,
# planted 10%, planted 20%) interleaved so machine drift hits all kinds alike. Both sides are
# temporary worktrees of one commit (4087df4f49af2c51cec35a82920a1dd576160ba3), the CI's default 2 rounds + escalation.
# The planted runs time only the planted benchmark (--only dwconv_se/forward: each
# benchmark's verdict uses its own processes alone), ~1 min instead of ~2.5.
cd /work/main
C=4087df4f49af2c51cec35a82920a1dd576160ba3
OUT=${OUT:-/tmp/ab19c}
ROUNDS=${1:-20}
for r in $(seq 1 "$ROUNDS"); do
  for kind in aa p10 p20; do
    case $kind in
      aa) plant=""; only="" ;;
      p10) plant="dwconv_se/forward:0.1"; only="--only dwconv_se/forward" ;;
      p20) plant="dwconv_se/forward:0.2"; only="--only dwconv_se/forward" ;;
    esac
    start=$(date +%s)
    flock /tmp/dartsfast-timing.lock env ${plant:+DARTSFAST_BENCH_PLANT_SLOWDOWN=$plant} \
      .venv/bin/python -m dartsfast bench ab --base $C --head $C $only --out $OUT/run-$r-$kind.json \
      > $OUT/run-$r-$kind.log 2>&1
    rc=$?
    echo "{\"round\": $r, \"kind\": \"$kind\", \"plant\": \"$plant\", \"exit\": $rc, \"seconds\": $(( $(date +%s) - start ))}" >> $OUT/runs.jsonl
  done
done
echo finished >> $OUT/runs.jsonl
