#!/usr/bin/env bash
# Run every benchmark on this machine; each writes benchmarks/results/<name>.{json,md}
# with the machine description and date. Expect a few hours on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
PY=.venv/bin/python
$PY -m benchmarks.ingest_benchmark --n 400
$PY -m benchmarks.roundtrip_benchmark
$PY -m benchmarks.matching_benchmark
$PY -m benchmarks.relax_benchmark --n 200 --dask
$PY -m benchmarks.hull_benchmark --n 100
$PY -m benchmarks.mcflow_benchmark --train-minutes 45 --threads 2
$PY -m benchmarks.symadit_benchmark
