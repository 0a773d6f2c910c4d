"""Where work runs: the local mappers keep order, limit threads and memory, restore settings."""

from __future__ import annotations

import os

from support.probes import allocate, threads_and_square

from tasks.core.mapping import (
    MIN_WORKER_MEMORY,
    THREAD_ENV,
    local_mapper,
    pool_map,
    thread_limits,
    worker_memory_limit,
)


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


def test_a_runaway_job_fails_in_its_worker_not_on_the_machine() -> None:
    # the same 6 GiB allocation: refused under a 5 GiB cap, granted under 12 GiB
    capped = pool_map(allocate, [6.0, 0.1], workers=2, memory_bytes=5 * 2**30)
    assert capped == ["MemoryError", "ok"]
    assert pool_map(allocate, [6.0, 0.1], workers=2, memory_bytes=12 * 2**30) == ["ok", "ok"]
    assert worker_memory_limit(1000) == MIN_WORKER_MEMORY
