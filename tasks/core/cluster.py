"""The run's Dask cluster: the ``dask:`` section of a profile, and the one place it starts.

``local``: a LocalCluster of single-threaded worker processes for the run; ``address``: an
existing scheduler; ``slurm``: dask-jobqueue SLURM jobs; ``none``: no Dask (the stages use
their own ``workers`` settings through :func:`tasks.core.mapping.local_mapper`). Workers
get the settings in ``infra/dask/workers.yaml`` (see that file's comments), through
``dask.config`` for LocalClusters and ``DASK_CONFIG`` for SLURM jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from tasks.core.config import StrictModel
from tasks.core.mapping import (
    BACKGROUND_NICE,
    THREAD_ENV,
    Mapper,
    environment,
    resolve_workers,
    thread_limits,
)
from tasks.core.paths import REPO_ROOT

log = logging.getLogger(__name__)

#: Dask settings of this project's CPU-bound workers (see the file's comments).
DASK_WORKER_CONFIG_DIR = REPO_ROOT / "infra" / "dask"


class JobqueueConfig(StrictModel):
    """Dask workers as SLURM jobs (``dask_jobqueue.SLURMCluster``), for ``cluster: slurm``.

    Each job runs ``processes`` single-threaded worker processes on ``cores`` cores.
    ``job_script_prologue`` lines run before the worker starts (``module load``, activating
    the project's environment).
    """

    queue: str | None = Field(default=None, description="SLURM partition")
    account: str | None = None
    jobs: int = Field(default=1, gt=0, description="SLURM jobs (each a group of workers)")
    cores: int = Field(default=4, gt=0)
    processes: int = Field(default=4, gt=0)
    memory: str = "16GB"
    walltime: str = "02:00:00"
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    log_directory: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> JobqueueConfig:
        if self.processes > self.cores:
            raise ValueError(f"processes ({self.processes}) > cores ({self.cores})")
        return self


class DaskConfig(StrictModel):
    """Where the chunked, map-heavy stages (validity, matching, relaxation) run.

    The whole section says where work runs, never what it computes: no cache key reads it.
    """

    cluster: Literal["local", "address", "slurm", "none"] = "local"
    address: str | None = Field(default=None, description="scheduler for cluster: address")
    n_workers: int = Field(default=0, ge=0, description="LocalCluster processes; 0 = all cores")
    memory_limit: str = Field(default="auto", description="per LocalCluster worker")
    nice: int = Field(
        default=BACKGROUND_NICE,
        ge=0,
        le=19,
        description=(
            "niceness added to LocalCluster workers: their chunks (validity, matching, "
            "relaxation) yield a core to the training a run waits on, which runs beside them"
        ),
    )
    tasks_per_worker: int = Field(
        default=4, gt=0, description="Prefect tasks per worker for a stage's chunks"
    )
    slurm: JobqueueConfig = Field(default_factory=JobqueueConfig)

    @model_validator(mode="after")
    def _check(self) -> DaskConfig:
        if (self.cluster == "address") != (self.address is not None):
            raise ValueError("address: give a scheduler address exactly when cluster is 'address'")
        return self


@dataclass(frozen=True)
class Cluster:
    """A running Dask cluster: where to connect and how many chunks to cut per stage."""

    address: str
    n_workers: int
    tasks_per_worker: int = 4

    @property
    def map_tasks(self) -> int:
        """Tasks per mapped stage (a few per worker, for load balance)."""
        return max(1, self.n_workers * self.tasks_per_worker)


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


@contextlib.contextmanager
def local_cluster(
    n_workers: int = 0,
    memory_limit: str = "auto",
    nice: int = 0,
    env: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """A LocalCluster of single-threaded worker processes (0 = every usable core), each with
    ``nice`` added to its niceness and the variables of ``env`` in its environment."""
    import dask
    from distributed import Client, LocalCluster

    with thread_limits(1), environment(env or {}), dask.config.set(dask_worker_config()):
        cluster = LocalCluster(
            n_workers=resolve_workers(n_workers),
            threads_per_worker=1,
            processes=True,
            memory_limit=memory_limit,
            dashboard_address=None,
        )
    with cluster:
        if nice:
            with Client(cluster) as client:
                client.run(os.nice, nice)
        yield cluster


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
            *(f"export {name}=1" for name in THREAD_ENV),
            f"export DASK_CONFIG={DASK_WORKER_CONFIG_DIR}",
            *config.job_script_prologue,
        ],
        log_directory=str(config.log_directory) if config.log_directory else None,
    )
    cluster.scale(jobs=config.jobs)
    return cluster


@contextlib.contextmanager
def dask_cluster(
    config: DaskConfig, env: Mapping[str, str] | None = None
) -> Iterator[Cluster | None]:
    """Start (or connect to) the run's Dask cluster for the duration of the block.

    Parameters
    ----------
    config
        Which cluster (see :class:`DaskConfig`).
    env
        Environment of a LocalCluster's workers (the flow passes the Prefect API it reports
        to, so the workers' tasks join it instead of each starting a temporary server).

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
        with _slurm_cluster(config.slurm) as cluster:
            n_workers = config.slurm.jobs * config.slurm.processes
            log.info("Dask SLURM cluster %s with %d workers", cluster.scheduler_address, n_workers)
            yield Cluster(cluster.scheduler_address, n_workers, config.tasks_per_worker)
        return
    with local_cluster(config.n_workers, config.memory_limit, config.nice, env) as cluster:
        n_workers = len(cluster.workers)
        log.info("Dask cluster %s with %d workers", cluster.scheduler_address, n_workers)
        yield Cluster(cluster.scheduler_address, n_workers, config.tasks_per_worker)


@contextlib.contextmanager
def dask_mapper(address: str | None, n_workers: int = 0) -> Iterator[Mapper]:
    """A :data:`Mapper` on a Dask cluster: the scheduler at ``address``, else a LocalCluster.

    Parameters
    ----------
    address
        Scheduler address (``tcp://host:8786``); ``None`` starts a LocalCluster of
        ``n_workers`` single-threaded processes (0 = every usable core) for the block.
    n_workers
        LocalCluster size.
    """
    from distributed import Client

    with contextlib.ExitStack() as stack:
        if address is None:
            address = stack.enter_context(local_cluster(n_workers)).scheduler_address
        client = stack.enter_context(Client(address, timeout=30))

        def mapper(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
            return client.gather(client.map(fn, list(jobs), pure=False))

        yield mapper
