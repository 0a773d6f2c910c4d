"""Prefect flows of the MLIP screen: relaxation and hull, thin wrappers over ``tasks/``.

:func:`relax_flow` and :func:`hull_flow` hand their relaxation chunks to the run's Dask
cluster as Prefect tasks, one task per chunk of ``relax.chunk_size`` candidates (Prefect
adds ~0.1 s per task, so never one per structure); without a cluster the chunks run with
``relax.scheduler``. ``mlip-screen`` chains both for a candidate file.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.parallel import Cluster, dask_cluster, on_cluster, task_mapper
from tasks.hull import HullConfig, run_hull
from tasks.mlip import MLIPConfig
from tasks.pipeline_config import DaskConfig
from tasks.relax import RelaxConfig, run_relax


@flow(name="mlip-relax")
def relax_flow(
    candidates: str,
    out_dir: str,
    mlip: MLIPConfig,
    relax: RelaxConfig,
    cluster: Cluster | None = None,
) -> str:
    """Relax a candidate file into ``out_dir`` (resumable); returns ``relaxed.parquet``."""
    mapper = task_mapper(None) if cluster else None
    return str(run_relax(candidates, out_dir, mlip, relax, mapper=mapper))


@flow(name="mlip-hull")
def hull_flow(
    relaxed: str,
    reference: str,
    out_dir: str,
    mlip: MLIPConfig,
    relax: RelaxConfig,
    hull: HullConfig,
    cluster: Cluster | None = None,
) -> str:
    """E_hull of relaxed candidates against the same MLIP's hull; returns ``hull.parquet``."""
    mapper = task_mapper(None) if cluster else None
    return str(run_hull(relaxed, reference, out_dir, mlip, relax, hull, mapper=mapper))


def relax_on(
    cluster: Cluster | None, candidates: str, out_dir: str, mlip: MLIPConfig, relax: RelaxConfig
) -> str:
    """:func:`relax_flow` with its chunk tasks on ``cluster``."""
    return on_cluster(relax_flow, cluster)(candidates, out_dir, mlip, relax, cluster)


def hull_on(
    cluster: Cluster | None,
    relaxed: str,
    reference: str,
    out_dir: str,
    mlip: MLIPConfig,
    relax: RelaxConfig,
    hull: HullConfig,
) -> str:
    """:func:`hull_flow` with its reference relaxations on ``cluster``."""
    return on_cluster(hull_flow, cluster)(relaxed, reference, out_dir, mlip, relax, hull, cluster)


@flow(name="mlip-screen")
def mlip_screen_flow(
    candidates: str,
    reference: str,
    out_dir: str = "runs/quick/mlip",
    mlip: MLIPConfig | None = None,
    relax: RelaxConfig | None = None,
    hull: HullConfig | None = None,
    dask: DaskConfig | None = None,
) -> Path:
    """Relax candidates with an MLIP, then place them on the same MLIP's hull.

    Parameters
    ----------
    candidates
        Candidate file (records parquet, extxyz or CSV with ``cif``).
    reference
        Reference set for the hull (records parquet or MP-20-style CSV).
    out_dir
        Writes ``relax/`` (see :func:`tasks.relax.run_relax`) and ``hull/``.
    mlip, relax, hull
        Settings (defaults: CHGNet, :class:`RelaxConfig`, :class:`HullConfig`).
    dask
        Where the chunks run (default: no Dask, ``relax.scheduler``).

    Returns
    -------
    Path
        The ``hull.parquet`` path.
    """
    out = Path(out_dir)
    mlip, relax = mlip or MLIPConfig(), relax or RelaxConfig()
    with dask_cluster(dask or DaskConfig(cluster="none")) as cluster:
        relaxed = relax_on(cluster, candidates, str(out / "relax"), mlip, relax)
        return Path(
            hull_on(
                cluster, relaxed, reference, str(out / "hull"), mlip, relax, hull or HullConfig()
            )
        )
