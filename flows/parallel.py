"""Prefect tasks that carry the map-heavy stages' chunks to the run's Dask cluster.

The cluster itself is started by :func:`tasks.core.cluster.dask_cluster` (one per run, from
the profile's ``dask:`` section). A stage that maps (validity, matching, relaxation) runs as
a subflow on a ``DaskTaskRunner`` connected to that cluster (:func:`on_cluster`) and hands
its jobs to :func:`task_mapper`: each Prefect task takes a group of jobs, never a single
structure, because Prefect's per-task overhead on Dask is about 0.1 s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Flow, task
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import unmapped

from tasks.core.cluster import Cluster
from tasks.core.mapping import Mapper, interleave

#: What the processes of a branch's unchunked work import (training and sampling, the
#: stand-in's DFT; :func:`tasks.core.mapping.in_own_process`): the interpreter's forkserver
#: imports it once (about 16 s) instead of every such process (8-10 s each).
OWN_PROCESS_PRELOAD = (
    "flows.model_work",
    "models.mcflow.api",
    "models.symadit.api",
    "tasks.dft.stage",
)

P = ParamSpec("P")
R = TypeVar("R")


def prefect_api_env() -> dict[str, str]:
    """``PREFECT_API_URL`` of the API this process reports to, for the processes it starts.

    Without a server (a flow called from Python or the CLI) Prefect runs a temporary one;
    Dask workers that do not know its address would each start their own (10-20 s apiece)
    and their tasks would not appear in the flow's run.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return {"PREFECT_API_URL": str(client.api_url).rstrip("/")}


def on_cluster(subflow: Flow[P, R], cluster: Cluster | None) -> Flow[P, R]:
    """``subflow`` with its tasks sent to ``cluster`` (unchanged when there is none)."""
    if cluster is None:
        return subflow
    from prefect_dask import DaskTaskRunner

    runner = cast(TaskRunner[Any], DaskTaskRunner(address=cluster.address))
    return subflow.with_options(task_runner=runner)


@task(name="jobs", cache_policy=NO_CACHE, persist_result=False)
def run_jobs(fn: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
    """Apply ``fn`` to a group of jobs on one worker."""
    return [fn(job) for job in jobs]


def task_mapper(n_tasks: int | None) -> Mapper:
    """A :data:`tasks.core.mapping.Mapper` that runs groups of jobs as Prefect tasks.

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


def cluster_mapper(cluster: Cluster | None, per_worker: bool = True) -> Mapper | None:
    """The mapper of a stage subflow on ``cluster`` (``None``: the stage's local default).

    ``per_worker`` groups jobs into a few tasks per worker (small jobs: validity, matching);
    otherwise each job is its own task (relaxation chunks).
    """
    if cluster is None:
        return None
    return task_mapper(cluster.map_tasks if per_worker else None)
