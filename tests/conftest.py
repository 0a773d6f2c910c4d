"""Shared fixtures: real data from ``../shared/data`` (or ``$DISCOVERY_SHARED_DATA``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# a loaded 2-core machine can take a minute to bring up Prefect's temporary server
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# the tests write their micro profiles under the temporary folder
os.environ.setdefault("DISCOVERY_PROFILE_DIRS", tempfile.gettempdir())

from tasks.core.paths import SAMPLES_DIR, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data directory; tests that need it skip (with the reason) when absent."""
    path = shared_data_dir()
    if not (path / "mp_20").exists():
        pytest.skip(f"shared data not found at {path} (set DISCOVERY_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def mp20_test_sample() -> Path:
    """200 MP-20 test rows, shipped in the repository."""
    return SAMPLES_DIR / "mp20_test_sample200.csv.gz"


@pytest.fixture(scope="session")
def mp20_train_sample() -> Path:
    """1,000 MP-20 train rows, shipped in the repository."""
    return SAMPLES_DIR / "mp20_train_sample1000.csv.gz"


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server (SQLite) for the whole test session.

    The start-up timeout is generous: on a loaded 2-core machine the server can take a
    minute to come up.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
