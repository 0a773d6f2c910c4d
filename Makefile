# The two commands a new user needs (README): `make sun-eval` and `make test`.
# Both create .venv and install everything on first use (infra/setup_env.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 300

.PHONY: setup sun-eval stop test test-slow lint benchmarks clean

setup:
	@bash infra/setup_env.sh
	@bash infra/install_cp2k.sh

## The main job on the embedded default: local Prefect server + worker, discovery/sun-eval.
sun-eval: setup
	@bash infra/local/start.sh

## Stop the local Prefect server and worker started by `make sun-eval`.
stop:
	@bash infra/local/stop.sh

## The default test suite (fast; slow checks are behind the `slow` marker), one pytest worker
## per core with each file on one worker (its module fixtures are built once).
test: setup
	$(VENV)/bin/pytest -m "not slow" -q -n 2 --dist loadfile

test-slow: setup
	$(VENV)/bin/pytest -m slow -q

## Style (ruff), layering (the import-linter contracts in pyproject.toml) and types (mypy).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

benchmarks: setup
	@bash benchmarks/run_all.sh

clean:
	rm -rf runs .pytest_cache
