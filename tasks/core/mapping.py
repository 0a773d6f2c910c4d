"""How the map-heavy steps (validity, matching, relaxation, analysis) spread their jobs.

A :data:`Mapper` takes a picklable one-argument function and a list of jobs (each job is
already a chunk of structures or a matcher bucket) and returns the results in job order.
Where the jobs run is decided in one place: :func:`local_mapper` (this process or a local
process pool) for the plain functions and the CLI, :func:`tasks.core.cluster.dask_mapper`
for a Dask cluster, and the Prefect flow's mapper that runs them as tasks on the run's
cluster (:mod:`flows.parallel`). Pools and clusters are started only here and in
:mod:`tasks.core.cluster`.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: ``mapper(fn, jobs) -> [fn(job) for job in jobs]``, computed anywhere, returned in order.
Mapper = Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]]

#: The thread-pool variables of BLAS / OpenMP libraries.
THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    """``workers``, or every usable core for ``0``."""
    return workers or usable_cores()


def limit_threads(threads: int = 1) -> None:
    """``threads`` BLAS/OpenMP threads in this process (a worker initializer, before numpy)."""
    for var in THREAD_ENV:
        os.environ[var] = str(threads)


#: The smallest address-space cap a pool worker gets (Python, numpy, pymatgen and torch alone
#: map a few GiB).
MIN_WORKER_MEMORY = 4 * 2**30


def worker_memory_limit(workers: int) -> int:
    """Address space (bytes) one of ``workers`` pool workers may map: the machine's memory
    shared out among them (as Dask's ``memory_limit="auto"``), at least 4 GiB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(total // max(workers, 1), MIN_WORKER_MEMORY)


def limit_worker(memory_bytes: int) -> None:
    """Pool-worker initializer: one BLAS thread, and at most ``memory_bytes`` of address
    space, so a runaway job fails with ``MemoryError`` in its worker instead of taking the
    machine's memory (readers turn that into a row with the reason)."""
    limit_threads(1)
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    cap = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for processes started inside the block, then restore them."""
    previous = {var: os.environ.get(var) for var in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for var, value in previous.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value


def thread_limits(threads: int = 1) -> contextlib.AbstractContextManager[None]:
    """Set the thread variables for processes started inside the block, then restore them."""
    return environment({var: str(threads) for var in THREAD_ENV})


def serial_map(fn: Callable[[T], R], jobs: Sequence[T]) -> list[R]:
    """``map`` in this process (the :data:`Mapper` of one worker)."""
    return [fn(job) for job in jobs]


def pool_map(
    fn: Callable[[T], R], jobs: Sequence[T], workers: int, memory_bytes: int | None = None
) -> list[R]:
    """``map`` in a process pool, or in this process for one worker or one job.

    Workers fork from a ``forkserver`` that has imported ``fn``'s module (and so pymatgen)
    once, so a pool starts fast and never forks a process that holds Prefect's threads.
    Each worker uses one BLAS thread and may map at most ``memory_bytes`` (default
    :func:`worker_memory_limit`).

    Parameters
    ----------
    fn
        A picklable (module-level) function of one job.
    jobs
        The jobs, each a unit worth a process round trip (a chunk, a bucket).
    workers
        Processes to use (0 = every usable core); ``1`` maps in this process.
    memory_bytes
        Address-space cap of each worker process.

    Returns
    -------
    list
        ``fn(job)`` for every job, in job order.
    """
    workers = resolve_workers(workers)
    if workers <= 1 or len(jobs) <= 1:
        return serial_map(fn, jobs)
    ctx = forkserver_context([fn.__module__])
    chunksize = max(1, len(jobs) // (workers * 8))
    n = min(workers, len(jobs))
    cap = memory_bytes or worker_memory_limit(n)
    with (
        thread_limits(1),
        ProcessPoolExecutor(
            max_workers=n, mp_context=ctx, initializer=limit_worker, initargs=(cap,)
        ) as pool,
    ):
        return list(pool.map(fn, jobs, chunksize=chunksize))


def forkserver_context(preload: Sequence[str] = ()) -> Any:
    """The ``forkserver`` context, asking that it import ``preload`` when it starts.

    An interpreter has one forkserver, started by its first pool or process; the modules it
    imports once are in every process it forks, so a child does not pay seconds of imports
    (torch, pymatgen, jobflow). The modules asked for so far are kept together, so one
    caller's request does not drop another's.
    """
    ctx = get_context("forkserver")
    wanted = list(dict.fromkeys([*_FORKSERVER_PRELOAD, *preload]))
    _FORKSERVER_PRELOAD[:] = wanted
    ctx.set_forkserver_preload(wanted)
    return ctx


#: The modules the interpreter's forkserver is asked to import (see :func:`forkserver_context`).
_FORKSERVER_PRELOAD: list[str] = []


#: Niceness added to background work (chunk workers, the stand-in's DFT jobs), so that it
#: yields the cores to the long single-process stages a run waits on (training).
BACKGROUND_NICE = 10


def _own_process_init(nice: int) -> None:
    limit_threads(1)
    os.nice(nice)


def in_own_process(
    fn: Callable[..., R], *args: Any, nice: int = 0, preload: Sequence[str] = ()
) -> R:
    """``fn(*args)`` in a new process of its own (one BLAS thread); wait for its result.

    For a stage's whole, unchunked work while another branch of the run works beside it: a
    model's training or sampling (two models then train on two cores, and neither holds a
    worker that the other branch's chunks wait for), and the local DFT calculations, which
    change the working directory of their process. The process forks from the
    ``forkserver``, so it never copies a process that holds Prefect's threads.

    Parameters
    ----------
    fn, args
        A picklable (module-level) function and its arguments.
    nice
        Added to the process's niceness: background work yields the cores to the stages a
        run waits on (training), as the run's Dask workers do (``dask.nice``).
    preload
        Modules the forkserver imports once, before it forks this process or any later one
        (:func:`forkserver_context`): a caller that runs several such processes names the
        heavy modules they all need on the first call.
    """
    ctx = forkserver_context([fn.__module__, *preload])
    with (
        thread_limits(1),
        ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_own_process_init, initargs=(nice,)
        ) as pool,
    ):
        return pool.submit(fn, *args).result()


def local_mapper(workers: int) -> Mapper:
    """This process for ``workers == 1``, else a local pool of ``workers`` processes."""

    def mapper(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        return pool_map(fn, jobs, workers)

    return mapper


def resolve_mapper(mapper: Mapper | None, workers: int) -> Mapper:
    """The given mapper, or :func:`local_mapper` of ``workers`` processes."""
    return mapper if mapper is not None else local_mapper(workers)


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
