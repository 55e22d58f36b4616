#!/bin/bash
# Real end-to-end bench ab runs (issue 19 evidence): rounds of (A/A, planted 10%, planted 20%)
# interleaved, so machine drift hits all kinds alike. Each run: base HEAD vs head HEAD (both
# temporary worktrees of the same commit), the CI's default 2 rounds; the plant reaches the head only.
cd /work/main
ROUNDS=${1:-4}
for r in $(seq 1 "$ROUNDS"); do
  for kind in aa p10 p20; do
    case $kind in
      aa) plant="" ;;
      p10) plant="dwconv_se/forward:0.1" ;;
      p20) plant="dwconv_se/forward:0.2" ;;
    esac
    start=$(date +%s)
    flock /tmp/dartsfast-timing.lock env ${plant:+DARTSFAST_BENCH_PLANT_SLOWDOWN=$plant} \
      .venv/bin/python -m dartsfast bench ab --base HEAD --head HEAD --out /tmp/ab19/run-$r-$kind.json \
      > /tmp/ab19/run-$r-$kind.log 2>&1
    rc=$?
    echo "{\"round\": $r, \"kind\": \"$kind\", \"plant\": \"$plant\", \"exit\": $rc, \"seconds\": $(( $(date +%s) - start ))}" >> /tmp/ab19/runs.jsonl
  done
done
echo finished >> /tmp/ab19/runs.jsonl
