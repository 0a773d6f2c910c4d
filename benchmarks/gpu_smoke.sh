#!/usr/bin/env bash
# GPU readiness check, prepared to run once when a CUDA machine is lent (a few minutes):
# MCFlow-S and SymADiT (paper size) train a fixed number of steps in bf16, sample, and record
# ms/step, s/epoch and crystals/s beside the papers' (benchmarks/results/gpu_smoke.md).
# Usage: benchmarks/gpu_smoke.sh [STEPS] [N_SAMPLES]   (defaults 300 and 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-300}"
samples="${2:-1000}"
python="${PYTHON:-.venv/bin/python}"
[ -x "$python" ] || python=python3
"$python" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name())'
nvidia-smi --query-gpu=name,memory.total,utilization.gpu --format=csv || true
out="${OUT:-benchmarks/results}"
exec "$python" -m benchmarks.gpu_smoke --steps "$steps" --n-samples "$samples" --device cuda --out "$out"
