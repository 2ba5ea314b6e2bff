#!/bin/sh
# Every GPU-only check of localai in one command, for a machine with an NVIDIA GPU:
#   sh scripts/gpu_check.sh     (after `make test` has set up .venv, which holds tensorrt-rtx and cuda-bindings;
#                                onnxruntime-gpu for the CUDA test, onnxruntime-ep-nv-tensorrt-rtx for the plugin test)
# Runs the tests marked `gpu` (TensorRT engines: parity with ONNX fp32, full and incremental, greedy output,
# bench rows; ONNX Runtime on CUDA and through its TensorRT for RTX plugin) and prints a short report.
# Exit status: pytest's.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
echo "== machine"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "no nvidia-smi: every GPU test will be skipped"
"$PY" - <<'PY'
import importlib.metadata as m
found = []
for name in ("localai", "onnxruntime", "onnxruntime-gpu", "onnxruntime-ep-nv-tensorrt-rtx", "tensorrt-rtx", "tensorrt",
             "cuda-bindings", "nvidia-ml-py"):
    try:
        found.append(f"{name} {m.version(name)}")
    except m.PackageNotFoundError:
        pass
print(", ".join(found))
PY
echo "== GPU-only tests"
report=$(mktemp)
"$PY" -m pytest -q -m gpu -rA -p no:cacheprovider tests >"$report" 2>&1
status=$?
tail -n 40 "$report"
rm -f "$report"
echo "== done (pytest status $status)"
exit $status
