#!/usr/bin/env bash
# After stage A (runs/grounder-$1; run 10: fusion1): stage B, export, INT8, evaluation rows on runs/eval-nosc.
set -euo pipefail
cd "$(dirname "$0")/../../.."      # the repository root
export OMP_NUM_THREADS=2
T=${1:-fusion1}
date; uptime
auditor-lite train-scorer --grounder runs/grounder-$T --bench runs/bench18k --out runs/grounded-$T \
    --crop-minutes 9 --crop-expressions 9000 --threads 2 2>&1 | tail -25
date
auditor-lite export onnx --model runs/grounded-$T --out runs/model-$T --overwrite 2>&1 | tail -5
auditor-lite export int8 --model runs/model-$T --bench runs/bench18k --out runs/model-$T-int8 --flavour cpu --overwrite 2>&1 | tail -5
date
bash bench/experiments/object_head/eval_all.sh runs/model-$T-int8 $T
date
B=runs/eval-nosc
auditor-lite eval --bench $B --mode image --no-plots --out runs/eval-$T \
  --pred runs/pred-$T-int8.jsonl --pred runs/pred-$T-fp32.jsonl --pred runs/pred-$T-int8-silent.jsonl \
  --pred runs/pred-$T-int8-shuffled.jsonl --pred runs/pred-cm2-int8.jsonl \
  --pred runs/pred-geometry.jsonl --pred runs/pred-constant.jsonl > runs/eval-$T.log
for w in 1 0; do
  auditor-lite eval --bench $B --mode image --split test_s --no-plots --out runs/eval-$T-na$w \
    --uids $B/train_test_meta_files/synth_cues.csv --where needs_audio=$w \
    --pred runs/pred-$T-int8.jsonl --pred runs/pred-$T-int8-silent.jsonl --pred runs/pred-cm2-int8.jsonl > runs/eval-$T-na$w.log
done
auditor-lite eval --bench $B --mode video --no-plots --out runs/eval-$T-video \
  --pred runs/pred-$T-int8-video.jsonl --pred runs/pred-constant.jsonl > runs/eval-$T-video.log || true
python bench/experiments/object_head/conformal_report.py runs/pred-$T-int8.jsonl > runs/conformal-$T.txt
date
