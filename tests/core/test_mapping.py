"""Where work runs: the local mappers keep order, and thread limits are restored after use."""

from __future__ import annotations

import os

from support.probes import threads_and_square

from tasks.core.mapping import THREAD_ENV, local_mapper, pool_map, thread_limits


def test_pool_keeps_order_and_limits_worker_threads() -> None:
    results = pool_map(threads_and_square, list(range(9)), workers=2)
    assert [r[0] for r in results] == [j * j for j in range(9)]
    assert {r[1] for r in results} == {"1"}
    assert os.getpid() not in {r[2] for r in results}
    assert local_mapper(1)(threads_and_square, [3])[0][2] == os.getpid()  # 1 worker: here


def test_thread_limits_are_restored(monkeypatch) -> None:
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with thread_limits(1):
        assert all(os.environ[v] == "1" for v in THREAD_ENV)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "7"
    assert "MKL_NUM_THREADS" not in os.environ
