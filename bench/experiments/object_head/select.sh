#!/usr/bin/env bash
# Model selection on runs/val-select (seed 5150, never eval-fresh): previous vs candidate.
set -euo pipefail
cd "$(dirname "$0")/../../.."      # the repository root
export OMP_NUM_THREADS=2
B=runs/val-select-nosc
while pgrep -f object_head/pipeline.sh >/dev/null; do sleep 10; done
date; uptime
for T in "$@"; do
  M=runs/model-$T-int8
  auditor-lite audit --bench $B --model $M --threads 2 --no-progress --mode image --precision int8-cpu \
     --out runs/sel-$T-int8.jsonl --method $T-int8
done
args=(); for T in "$@"; do args+=(--pred runs/sel-$T-int8.jsonl); done
auditor-lite eval --bench $B --mode image --no-plots --out runs/sel-eval "${args[@]}" > runs/sel-eval.log
for T in "$@"; do
  G=runs/grounder-$T
  auditor-lite diagnose grounding --model $G --bench runs/val-select --json runs/sel-diag-$T.json > runs/sel-diag-$T.txt
done
date
