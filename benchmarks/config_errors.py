"""How long the discovery flow takes to refuse each configuration error of the fault suite.

Run from the repository root::

    .venv/bin/python -m benchmarks.config_errors

Starts one temporary Prefect server (its start is not counted), then runs the real
``discovery_flow`` once per case of ``tests/faults/test_bad_configs.py`` and times the call
from its start to the refusal: the flow run's creation, the configuration's validation and
the preflight checks (datasets, checkpoints, the MLIP's weights, the reference table,
``sbatch``). Writes ``benchmarks/results/config_errors.{json,md}``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DISCOVERY_PROFILE_DIRS", tempfile.gettempdir())

import yaml

from benchmarks.machine import machine_info, save_results
from tasks.core.paths import REPO_ROOT, SAMPLES_DIR

sys.path.insert(0, str(REPO_ROOT / "tests"))
from support.profiles import micro_profile


def fault_cases() -> dict:
    """The configuration faults of the fault suite (one definition, read from the test)."""
    path = REPO_ROOT / "tests" / "faults" / "test_bad_configs.py"
    spec = importlib.util.spec_from_file_location("test_bad_configs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {"cases": module.CASES, "set": module._set}


def main() -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.discovery import discovery_flow

    faults = fault_cases()
    os.environ["PATH"] = str(Path(sys.executable).parent)  # no sbatch
    rows = []
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=300):
        for case, (changes, key) in faults["cases"].items():
            root = Path(tmp) / case.replace(" ", "-")
            root.mkdir()
            micro = micro_profile(root, SAMPLES_DIR / "mp20_train_sample1000.csv.gz")
            profile = yaml.safe_load(micro.read_text())
            for dotted, value in changes.items():
                faults["set"](profile, dotted, value)
            micro.write_text(yaml.safe_dump(profile))
            start = time.perf_counter()
            try:
                discovery_flow(profile=str(micro))
                message = "NOT REFUSED"
            except ValueError as err:
                message = str(err)
            seconds = time.perf_counter() - start
            named = f"- {key}" in message
            left = Path(profile["run_root"]).exists()
            rows.append({"case": case, "key": key, "seconds": round(seconds, 3),
                         "key_named": named, "run_dir_left": left})  # fmt: skip
            print(f"{case:40s} {seconds:6.2f} s  key named: {named}  run dir left: {left}")
    machine = machine_info()
    worst = max(r["seconds"] for r in rows)
    lines = [
        "# Configuration errors: time from the flow's start to the refusal",
        "",
        "Command: `.venv/bin/python -m benchmarks.config_errors`",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, load {machine['load_average']}, "
        f"{machine['date_utc']} UTC. The temporary Prefect server's start is not counted.",
        "",
        "| case | key named | seconds | run dir left behind |",
        "| --- | --- | --- | --- |",
        *(
            f"| {r['case']} | `{r['key']}` {'yes' if r['key_named'] else 'NO'} | "
            f"{r['seconds']:.2f} | {'YES' if r['run_dir_left'] else 'no'} |"
            for r in rows
        ),
        "",
        f"Slowest refusal: {worst:.2f} s (goal: under 2 s).",
        "",
    ]
    save_results("config_errors", {"rows": rows, "slowest_s": worst}, "\n".join(lines))


if __name__ == "__main__":
    main()
