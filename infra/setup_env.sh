#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv.
# torch is installed first, pinned to the CPU build these machines carry, so that every later
# requirement resolves against it instead of pulling a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
log=$(mktemp)
stamp="$VENV/.installed-$(cat pyproject.toml infra/layers/*.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ]; then
  exit 0
fi
echo "[setup] creating $VENV and installing dependencies (first run takes a few minutes)"
run() { "$@" >>"$log" 2>&1 || { tail -n 60 "$log"; echo "[setup] failed: $*" >&2; exit 1; }; }
[ -x "$VENV/bin/python" ] || run "$PYTHON" -m venv "$VENV"
run "$VENV/bin/python" -m pip install --upgrade pip
run "$VENV/bin/python" -m pip install "torch==2.13.0"
run "$VENV/bin/python" -m pip install -e ".[dev]"
run "$VENV/bin/python" -m pip check
# Package layers of MLIPs whose pins conflict with the main environment (tasks/mlip/worker.py)
for layer in infra/layers/*.txt; do
  target="$VENV/layers/$(basename "$layer" .txt)"
  rm -rf "$target"
  run "$VENV/bin/python" -m pip install --no-deps --target "$target" -r "$layer"
done
rm -f "$VENV"/.installed-*
touch "$stamp"
echo "[setup] environment ready in $VENV"
