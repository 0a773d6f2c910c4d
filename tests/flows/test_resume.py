"""Kill -9 mid-relaxation and mid-fine-tune, rerun: finished work is neither redone nor lost.

One two-round micro run with the learning loop on, two branches side by side (the MCFlow
model and a file of released samples), is killed twice: during round 1's MLIP relaxation
(chunks of one crystal, relaxed one at a time, so a kill loses at most the chunk in flight)
and during the fine-tuning between the rounds. After each kill the rerun of the same run id
must leave every finished file of both branches untouched and complete the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml
from support.profiles import micro_profile

from tasks.core.paths import SAMPLES_DIR
from tasks.pipeline.checkpoints import CheckpointInfo

RUN = """
import sys
from flows.discovery import discovery_flow
discovery_flow(profile=sys.argv[1], run_id="resume")
"""


def _launch(profile: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(profile)],
        env=env,
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill_when(process: subprocess.Popen, ready: Callable[[], bool], log: Path, what: str) -> None:
    deadline = time.monotonic() + 1200
    while not ready():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"{what} never started"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # kill -9 the whole flow
    process.wait()


def _mtimes(paths: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


def test_kill_during_relaxation_and_fine_tuning_then_resume(tmp_path, mp20_train_sample) -> None:
    released = SAMPLES_DIR / "diffcsp_mp20_first64.extxyz"
    profile = micro_profile(tmp_path, mp20_train_sample, samples=released)
    config = yaml.safe_load(profile.read_text())
    assert config["relax"]["chunk_size"] == 1 and config["relax"]["scheduler"] == "serial"
    config["rounds"] = 2
    config["stability"] = {"metastable_below": 1e6}  # the stand-in confirms what it completes
    config["loop"] = {"finetune": True, "steps": 600}
    profile.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "VASP_STANDIN_STEPS": "2",
    }
    log = tmp_path / "flow.log"
    run = tmp_path / "runs" / "resume"
    chunks = run / "round-1" / "mcflow" / "mlip" / "relax" / "chunks"

    # 1. kill -9 during round 1's relaxation
    process = _launch(profile, env, log)
    _kill_when(process, lambda: chunks.exists() and any(chunks.rglob("chunk-*.parquet")), log,
               "relaxation")  # fmt: skip
    checkpoint = run / "checkpoints" / "mcflow" / "latest.pt"
    samples = run / "round-1" / "mcflow" / "samples" / "samples.parquet"
    # the other branch's finished stages (it may be anywhere in its funnel at the kill)
    other = run / "round-1" / "released"
    finished = [other / "samples" / "samples.parquet"]
    if (other / "filters" / "metrics.json").exists():
        finished += [p for p in (other / "filters").iterdir() if p.is_file()]
    finished += [*(other / "mlip" / "relax" / "chunks").rglob("chunk-*.parquet")]
    assert finished[0].exists()
    before = _mtimes([checkpoint, samples, *chunks.rglob("chunk-*.parquet"), *finished])
    assert not (run / "report" / "index.html").exists()

    # 2. rerun, kill -9 during the fine-tuning between the rounds
    finetune_log = run / "checkpoints" / "mcflow" / "round-2" / "metrics.jsonl"
    process = _launch(profile, env, log)
    _kill_when(process, lambda: finetune_log.exists() and finetune_log.stat().st_size > 0, log,
               "fine-tuning")  # fmt: skip
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    relaxed = run / "round-1" / "mcflow" / "mlip" / "relax" / "relaxed.parquet"
    candidates = run / "round-1" / "mcflow" / "mlip" / "candidates.parquet"
    assert len(pd.read_parquet(relaxed)) == len(pd.read_parquet(candidates))
    round1 = [p for p in (run / "round-1").rglob("*") if p.is_file()]
    before = _mtimes([checkpoint, *round1])

    # 3. rerun to the end: round 1 untouched, the fine-tuning resumed and finished
    process = _launch(profile, env, log)
    assert process.wait(timeout=1800) == 0, log.read_text()[-3000:]
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    lines = [json.loads(x) for x in finetune_log.open()]
    steps = [x["step"] for x in lines if x["split"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 600  # resumed, no step logged twice
    first, second = (
        CheckpointInfo.read(run / f"round-{k}" / "mcflow" / "checkpoint.json") for k in (1, 2)
    )
    assert second.init_from == first.checkpoint != second.checkpoint
    assert (run / "report" / "index.html").exists()
