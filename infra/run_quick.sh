#!/usr/bin/env bash
# The embedded default: the quick profile on the bundled MP-20 sample, on this machine's CPU.
# Runs the Prefect `ingest` flow (ephemeral local Prefect API, SQLite) and prints where the
# outputs are.
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFECT_SERVER_ANALYTICS_ENABLED=false OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
OUT=${OUT:-runs/quick/dataset}
.venv/bin/discovery ingest --config quick --prefect --out "$OUT"
echo
echo "Processed datasets, rejects, stats and plots: $OUT/ (summary: $OUT/summary.md)"
