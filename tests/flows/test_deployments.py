"""prefect.yaml deploys against a real (test) Prefect server; the nightly schedule is registered."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from tasks.core.paths import REPO_ROOT

PREFECT = str(Path(sys.executable).with_name("prefect"))


def test_prefect_yaml_lists_the_deployments_and_pools() -> None:
    spec = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in spec["deployments"]}
    assert by_name["sun-eval"]["entrypoint"] == "flows/discovery.py:discovery_flow"
    assert by_name["nightly-benchmark"]["schedules"][0]["cron"] == "0 2 * * *"
    assert by_name["dft-batch"]["work_pool"]["name"] == "hpc"
    assert {d["work_pool"]["name"] for d in spec["deployments"]} == {"local", "gpu", "hpc"}


def test_nightly_schedule_is_registered(prefect_harness, tmp_path) -> None:
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "DISCOVERY_REPO": str(REPO_ROOT),
        "PREFECT_HOME": str(tmp_path),
    }

    def prefect(*args: str) -> None:
        proc = subprocess.run(
            [PREFECT, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    prefect("work-pool", "create", "local", "--type", "process", "--overwrite")
    prefect("--no-prompt", "deploy", "--name", "nightly-benchmark", "--name", "sun-eval")
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("nightly-benchmark/nightly-benchmark")
        sun_eval = client.read_deployment_by_name("discovery/sun-eval")
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert all(s.active for s in nightly.schedules)
    assert nightly.work_pool_name == sun_eval.work_pool_name == "local"
    assert sun_eval.parameters == {"profile": "quick"}
