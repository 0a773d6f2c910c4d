"""The run's Dask cluster, and Prefect tasks that carry the map-heavy stages' chunks to it.

One cluster serves a whole run (:func:`dask_cluster`): a LocalCluster of single-threaded
worker processes by default, an existing scheduler, or SLURM jobs through dask-jobqueue.
Workers live as long as the run, so an MLIP is loaded once per worker, not once per stage.

A stage that maps (validity, matching, relaxation) runs as a subflow on a
``DaskTaskRunner`` connected to that cluster (:func:`on_cluster`) and hands its jobs to
:func:`task_mapper`: each Prefect task takes a group of jobs, never a single structure,
because Prefect's per-task overhead on Dask is about 0.1 s.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.utilities.annotations import unmapped

from tasks.mapping import (
    DASK_WORKER_CONFIG_DIR,
    Mapper,
    dask_worker_config,
    interleave,
    limit_threads,
    usable_cores,
)
from tasks.pipeline_config import DaskConfig, JobqueueConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cluster:
    """A running Dask cluster: where to connect and how many chunks to cut per stage."""

    address: str
    n_workers: int
    tasks_per_worker: int = 4

    @property
    def map_tasks(self) -> int:
        """Prefect tasks per mapped stage (a few per worker, for load balance)."""
        return max(1, self.n_workers * self.tasks_per_worker)


def _slurm_cluster(config: JobqueueConfig) -> Any:
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        queue=config.queue,
        account=config.account,
        cores=config.cores,
        processes=config.processes,
        memory=config.memory,
        walltime=config.walltime,
        job_extra_directives=config.job_extra_directives,
        job_script_prologue=[
            *(f"export {name}=1" for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")),
            f"export DASK_CONFIG={DASK_WORKER_CONFIG_DIR}",
            *config.job_script_prologue,
        ],
        log_directory=str(config.log_directory) if config.log_directory else None,
    )
    cluster.scale(jobs=config.jobs)
    return cluster


@contextmanager
def dask_cluster(config: DaskConfig) -> Iterator[Cluster | None]:
    """Start (or connect to) the run's Dask cluster for the duration of the block.

    Parameters
    ----------
    config
        Which cluster (see :class:`tasks.pipeline_config.DaskConfig`).

    Yields
    ------
    Cluster or None
        The cluster's address and size; ``None`` for ``cluster: none``.
    """
    if config.cluster == "none":
        yield None
        return
    if config.cluster == "address":
        from distributed import Client

        with Client(config.address, timeout=30) as client:
            n_workers = len(client.scheduler_info()["workers"])
        yield Cluster(str(config.address), max(1, n_workers), config.tasks_per_worker)
        return
    if config.cluster == "slurm":
        cluster = _slurm_cluster(config.slurm)
        n_workers = config.slurm.jobs * config.slurm.processes
    else:
        import dask
        from distributed import LocalCluster

        limit_threads()  # inherited by the worker processes before numpy / torch load there
        n_workers = config.n_workers or usable_cores()
        with dask.config.set(dask_worker_config()):
            cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=config.memory_limit,
                dashboard_address=None,
            )
    log.info("Dask cluster %s with %d workers", cluster.scheduler_address, n_workers)
    with cluster:
        yield Cluster(cluster.scheduler_address, n_workers, config.tasks_per_worker)


def on_cluster(subflow: Flow, cluster: Cluster | None) -> Flow:
    """``subflow`` with its tasks sent to ``cluster`` (unchanged when there is none)."""
    if cluster is None:
        return subflow
    from prefect_dask import DaskTaskRunner

    return subflow.with_options(task_runner=DaskTaskRunner(address=cluster.address))


@task(name="jobs", cache_policy=NO_CACHE, persist_result=False)
def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
    """Apply ``fn`` to a group of jobs on one worker."""
    return [fn(job) for job in jobs]


def task_mapper(n_tasks: int | None) -> Mapper:
    """A :data:`tasks.mapping.Mapper` that runs groups of jobs as Prefect tasks.

    Call it inside a flow whose task runner is the run's cluster (:func:`on_cluster`).

    Parameters
    ----------
    n_tasks
        Groups per call (jobs are dealt round-robin); ``None`` = one task per job, for jobs
        that are already a worker's worth (relaxation chunks).
    """

    def mapper(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        groups = interleave(len(jobs), n_tasks or len(jobs))
        name = fn.__name__.strip("_").replace("_", "-")
        futures = run_jobs.with_options(name=name).map(
            unmapped(fn), [[jobs[i] for i in group] for group in groups]
        )
        out: list[Any] = [None] * len(jobs)
        for group, future in zip(groups, futures, strict=True):
            for i, result in zip(group, future.result(), strict=True):
                out[i] = result
        return out

    return mapper
