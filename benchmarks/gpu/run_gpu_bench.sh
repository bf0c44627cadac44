#!/usr/bin/env bash
# One command for the device tool (issue 14): run from the repository root on a machine with an NVIDIA GPU.
#   bash benchmarks/gpu/run_gpu_bench.sh            # results: $OUT/gpu_bench.json (OUT defaults to ./gpu_out)
# Installs nothing beyond the project itself (and only when it is not importable yet); never run by CI.
set -euo pipefail
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=.venv/bin/python
export OUT=${OUT:-$PWD/gpu_out}
if ! "$PY" -c "import napari_xt" 2>/dev/null; then
  "$PY" -m pip install --no-deps -q -e .
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 470 "$PY" benchmarks/gpu/gpu_bench.py --seconds "${SECONDS_PER_INPUT:-60}" "$@"
