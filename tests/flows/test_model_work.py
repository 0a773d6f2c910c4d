"""Training and sampling sent to the gpu work pool: a real worker runs them as flow runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from support.profiles import micro_profile

from flows.model_work import run_model_work
from tasks.core.config import load_config
from tasks.core.paths import REPO_ROOT
from tasks.ingest.run import ingest_sources
from tasks.pipeline.config import PipelineConfig

PREFECT = str(Path(sys.executable).with_name("prefect"))


@pytest.fixture()
def gpu_pool_worker(prefect_harness, tmp_path):
    """The ``gpu`` pool, prefect.yaml's ``model-work/gpu`` deployment and a worker polling it."""
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "DISCOVERY_REPO": str(REPO_ROOT),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "CUDA_VISIBLE_DEVICES": "",
    }
    for args in (
        ("work-pool", "create", "gpu", "--type", "process", "--overwrite"),
        ("--no-prompt", "deploy", "--name", "gpu"),
    ):
        proc = subprocess.run(
            [PREFECT, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "gpu", "--prefetch-seconds", "5"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    yield worker
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:  # a loaded machine can stall the graceful shutdown
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()


def test_training_and_sampling_run_on_the_gpu_pool(
    gpu_pool_worker, tmp_path, mp20_train_sample
) -> None:
    config = load_config(micro_profile(tmp_path, mp20_train_sample), PipelineConfig)
    dataset = str(ingest_sources(config.datasets, tmp_path / "dataset", config.ingest)[0].dataset)
    model = config.models[0]
    deployment = "model-work/gpu"
    checkpoint = run_model_work(
        deployment, None, "train", model, dataset, str(tmp_path / "ckpt"), 0
    )
    assert Path(checkpoint).is_file() and Path(checkpoint).is_relative_to(tmp_path / "ckpt")
    samples = run_model_work(deployment, None, "sample", model, checkpoint, str(tmp_path / "s"), 3)
    assert len(pd.read_parquet(samples)) == model.n_samples
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        deployment_id = client.read_deployment_by_name(deployment).id
    remote = [r for r in runs if r.deployment_id == deployment_id]
    assert sorted(r.parameters["action"] for r in remote) == ["sample", "train"]
    assert all(r.state.is_completed() for r in remote)
    assert {r.work_pool_name for r in remote} == {"gpu"}
