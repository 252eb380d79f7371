#!/usr/bin/env bash
# One command for a CUDA machine: a fresh environment with onnxruntime-gpu (it cannot share one
# with the CPU onnxruntime), the package on top of it, then `auditor-lite bench --gpu` on the
# shipped directory (CUDA FP32 beside the CPU variants; TensorRT's int8-trt variant only where
# ONNX Runtime lists the TensorRT provider and the directory has that graph), under a timeout.
#
#   bash bench/gpu_bench.sh [OUT_DIR]          # default OUT_DIR: bench_gpu
#
# Environment: AUDITOR_GPU_VENV (default /tmp/auditor-lite-gpu-venv; reused when present),
# AUDITOR_GPU_TIMEOUT (seconds, default 900), AUDITOR_GPU_MASKS (default 1,13,64),
# AUDITOR_GPU_MODEL (a model directory; default: the packaged one), PYTHON (default python3).
# Exit status: 0 with the report, 0 with "skipped: ..." where there is no NVIDIA GPU, 124 on the
# timeout, otherwise the failing step's status.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench_gpu}
VENV=${AUDITOR_GPU_VENV:-/tmp/auditor-lite-gpu-venv}
TIMEOUT=${AUDITOR_GPU_TIMEOUT:-900}
MASKS=${AUDITOR_GPU_MASKS:-1,13,64}
PY=${PYTHON:-python3}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "skipped: no NVIDIA GPU here (nvidia-smi missing or lists no device); nothing installed"
  exit 0
fi
nvidia-smi -L

if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
# the package without its onnxruntime dependency, then the GPU build of ONNX Runtime
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q onnxruntime-gpu "numpy>=1.24" "tokenizers>=0.15" "pillow>=10" "soundfile>=0.12" \
    "click>=8.1" "tqdm>=4.60"
"$VENV/bin/pip" install -q --no-deps .
"$VENV/bin/python" - <<'EOF'
import onnxruntime as ort
providers = ort.get_available_providers()
print(f"onnxruntime {ort.__version__} ({ort.get_device()}): {', '.join(providers)}")
if "CUDAExecutionProvider" not in providers:
    raise SystemExit("onnxruntime-gpu lists no CUDAExecutionProvider: check the CUDA / cuDNN libraries "
                     "it needs (https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html)")
if "TensorrtExecutionProvider" not in providers:
    print("note: no TensorrtExecutionProvider here: the int8-trt variant is left out")
EOF

MODEL_ARGS=()
if [ -n "${AUDITOR_GPU_MODEL:-}" ]; then MODEL_ARGS=(--model "$AUDITOR_GPU_MODEL"); fi
set +e
timeout "$TIMEOUT" "$VENV/bin/auditor-lite" bench --gpu "${MODEL_ARGS[@]}" --mask-counts "$MASKS" \
    --repeats 50 --no-plot --out "$OUT"
status=$?
set -e
if [ "$status" -eq 124 ]; then
  echo "timed out after ${TIMEOUT} s (AUDITOR_GPU_TIMEOUT); partial output, if any, is in $OUT"
fi
exit "$status"
