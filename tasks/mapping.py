"""How the map-heavy steps (validity, matching, relaxation) spread their independent jobs.

A :data:`Mapper` takes a picklable one-argument function and a list of jobs (each job is
already a chunk of structures or a matcher bucket) and returns the results in job order.
The pure functions in ``tasks/`` default to :func:`pool_map` (a local process pool); the
Prefect flow passes a mapper that runs the jobs as Prefect tasks on the run's Dask cluster
(:mod:`flows.parallel`), so the same code runs on a laptop, a LocalCluster or SLURM.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import Any, TypeVar

import yaml

from tasks.paths import REPO_ROOT

T = TypeVar("T")
R = TypeVar("R")

#: ``mapper(fn, jobs) -> [fn(job) for job in jobs]``, computed anywhere, returned in order.
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]

_THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

#: Dask settings of this project's CPU-bound workers (see the file's comments).
DASK_WORKER_CONFIG_DIR = REPO_ROOT / "infra" / "dask"


def dask_worker_config() -> dict[str, Any]:
    """``infra/dask/workers.yaml`` as dotted keys for ``dask.config.set``.

    Measured here: with Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` a CHGNet relaxation
    took 39.7 s for 12 structures in a worker, 27.7 s with the variable unset (28.2 s in a
    plain process).
    """
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            flat[prefix] = node

    walk("", yaml.safe_load((DASK_WORKER_CONFIG_DIR / "workers.yaml").read_text()))
    return flat


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def limit_threads() -> None:
    """One BLAS/OpenMP thread in this process (worker initializer; must run before numpy)."""
    for var in _THREAD_ENV:
        os.environ[var] = "1"


def pool_map(fn: Callable[[T], R], jobs: Sequence[T], workers: int) -> list[R]:
    """``map`` in a process pool, or in this process for one worker or one job.

    Workers fork from a ``forkserver`` that has imported ``fn``'s module (and so pymatgen)
    once, so a pool starts fast and never forks a process that holds Prefect's threads.

    Parameters
    ----------
    fn
        A picklable (module-level) function of one job.
    jobs
        The jobs, each a unit worth a process round trip (a chunk, a bucket).
    workers
        Processes to use; ``<= 1`` maps in this process.

    Returns
    -------
    list
        ``fn(job)`` for every job, in job order.
    """
    if workers <= 1 or len(jobs) <= 1:
        return [fn(job) for job in jobs]
    ctx = get_context("forkserver")
    ctx.set_forkserver_preload([fn.__module__])
    chunksize = max(1, len(jobs) // (workers * 8))
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=ctx, initializer=limit_threads
    ) as pool:
        return list(pool.map(fn, jobs, chunksize=chunksize))


def resolve_mapper(mapper: Mapper | None, workers: int) -> Mapper:
    """The given mapper, or a local process pool of ``workers`` processes."""
    return mapper if mapper is not None else partial(pool_map, workers=workers)


def interleave(n_jobs: int, n_groups: int) -> list[list[int]]:
    """Deal job indices round-robin into at most ``n_groups`` groups.

    Jobs are often sorted by cost (matcher buckets largest first), so dealing them out
    spreads the expensive ones over the groups instead of giving them all to the first.

    Examples
    --------
    >>> interleave(5, 2)
    [[0, 2, 4], [1, 3]]
    """
    n_groups = max(1, min(n_groups, n_jobs))
    return [list(range(k, n_jobs, n_groups)) for k in range(n_groups)] if n_jobs else []
