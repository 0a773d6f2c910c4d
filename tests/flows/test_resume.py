"""Kill -9 in the middle of the MLIP relaxation, rerun: finished work is neither redone nor lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from support.profiles import micro_profile

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


def test_kill_during_relaxation_then_resume(tmp_path: Path, mp20_train_sample) -> None:
    profile = micro_profile(tmp_path, mp20_train_sample)
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "VASP_STANDIN_STEPS": "2",
    }
    log = tmp_path / "flow.log"
    run = tmp_path / "runs" / "resume"
    chunks = run / "round-1" / "mcflow" / "mlip" / "relax" / "chunks"
    process = _launch(profile, env, log)
    deadline = time.monotonic() + 1200
    while not (chunks.exists() and any(chunks.rglob("chunk-*.parquet"))):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "relaxation never started"
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # kill -9 the whole flow, mid-relaxation
    process.wait()
    checkpoint = next((run / "checkpoints" / "mcflow").rglob("*.pt"))
    samples = run / "round-1" / "mcflow" / "samples" / "samples.parquet"
    saved = list(chunks.rglob("chunk-*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in [checkpoint, samples, *saved]}
    assert not (run / "report" / "index.html").exists()

    process = _launch(profile, env, log)
    assert process.wait(timeout=1800) == 0, log.read_text()[-3000:]
    for path, mtime in before.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was redone"
    assert (run / "report" / "index.html").exists()
    relaxed = run / "round-1" / "mcflow" / "mlip" / "relax" / "relaxed.parquet"
    assert len(pd.read_parquet(relaxed)) == len(
        pd.read_parquet(run / "round-1" / "mcflow" / "mlip" / "candidates.parquet")
    )
