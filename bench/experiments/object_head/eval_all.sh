#!/usr/bin/env bash
# Evaluate a grounded model dir (FP32 + INT8) on runs/eval-nosc (eval-fresh without sidecars).
set -euo pipefail
cd "$(dirname "$0")/../../.."      # the repository root
M=${1:-runs/model-v3-int8}; TAG=${2:-v3}; B=runs/eval-nosc
export OMP_NUM_THREADS=2
A="auditor-lite audit --bench $B --model $M --threads 2 --no-progress"
$A --mode image --precision fp32 --out runs/pred-$TAG-fp32.jsonl --method $TAG-fp32
$A --mode image --precision int8-cpu --out runs/pred-$TAG-int8.jsonl --method $TAG-int8
$A --mode image --precision int8-cpu --silence-audio --out runs/pred-$TAG-int8-silent.jsonl --method $TAG-int8-silenced
$A --mode image --precision int8-cpu --shuffle-expressions 1 --out runs/pred-$TAG-int8-shuffled.jsonl --method $TAG-int8-shuffled
$A --mode video --precision int8-cpu --out runs/pred-$TAG-int8-video.jsonl --method $TAG-int8
