"""``infra/local/stop.sh`` stops the worker first, escalates to SIGKILL, keeps honest pid files."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tasks.core.paths import REPO_ROOT

STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
POLITE = "import time; time.sleep(600)"


def _start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def test_stop_order_escalation_and_pid_files(tmp_path) -> None:
    state = tmp_path / "local"
    state.mkdir()
    worker, server = _start(STUBBORN), _start(POLITE)
    (state / "worker.pid").write_text(str(worker.pid))
    (state / "server.pid").write_text(str(server.pid))
    time.sleep(0.5)  # let the worker install its SIGTERM handler
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "STOP_GRACE_S": "2"}
    out = subprocess.run(
        ["bash", str(REPO_ROOT / "infra" / "local" / "stop.sh")],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert worker.wait(timeout=10) == -9  # it ignored SIGTERM: killed after the grace period
    assert server.wait(timeout=10) != 0
    lines = out.stdout.splitlines()
    assert lines.index("[stop] worker stopped") < lines.index("[stop] server stopped")
    assert not (state / "worker.pid").exists() and not (state / "server.pid").exists()
