"""Prefect flows of the MLIP screen: relaxation and hull, thin wrappers over ``tasks/``.

:func:`relax_flow` and :func:`hull_flow` hand their relaxation chunks to the run's Dask
cluster as Prefect tasks, one task per chunk of ``relax.chunk_size`` candidates (Prefect
adds ~0.1 s per task, so never one per structure); without a cluster the chunks run with
``relax.scheduler``. ``mlip-screen`` chains both for a candidate file.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.parallel import cluster_mapper, on_cluster
from tasks.core.cluster import Cluster, DaskConfig, dask_cluster
from tasks.core.stability import StabilityRule
from tasks.mlip.hull_stage import run_hull
from tasks.mlip.runner import run_relax
from tasks.mlip.settings import MLIPConfig, MLIPHullConfig, RelaxConfig, ScreenSettings


@flow(name="mlip-relax")
def relax_flow(
    candidates: str,
    out_dir: str,
    mlip: MLIPConfig,
    relax: RelaxConfig,
    cluster: Cluster | None = None,
) -> str:
    """Relax a candidate file into ``out_dir`` (resumable); returns ``relaxed.parquet``."""
    return str(run_relax(candidates, out_dir, mlip, relax, cluster_mapper(cluster, False)))


@flow(name="mlip-hull")
def hull_flow(
    relaxed: str,
    extra_references: list[str],
    out_dir: str,
    screen: ScreenSettings,
    cluster: Cluster | None = None,
) -> str:
    """E_hull of relaxed candidates against the same MLIP's hull; returns ``hull.parquet``."""
    mapper = cluster_mapper(cluster, False)
    return str(run_hull(relaxed, out_dir, screen, mapper, extra_references))


def relax_on(
    cluster: Cluster | None, candidates: str, out_dir: str, mlip: MLIPConfig, relax: RelaxConfig
) -> str:
    """:func:`relax_flow` with its chunk tasks on ``cluster``."""
    return on_cluster(relax_flow, cluster)(candidates, out_dir, mlip, relax, cluster)


def hull_on(
    cluster: Cluster | None,
    relaxed: str,
    extra_references: list[str],
    out_dir: str,
    screen: ScreenSettings,
) -> str:
    """:func:`hull_flow` with its reference computations on ``cluster``."""
    return on_cluster(hull_flow, cluster)(relaxed, extra_references, out_dir, screen, cluster)


@flow(name="mlip-screen")
def mlip_screen_flow(
    candidates: str,
    out_dir: str = "runs/quick/mlip",
    mlip: MLIPConfig | None = None,
    relax: RelaxConfig | None = None,
    hull: MLIPHullConfig | None = None,
    dask: DaskConfig | None = None,
    rule: StabilityRule | None = None,
) -> Path:
    """Relax candidates with an MLIP, then place them on the same MLIP's hull.

    Parameters
    ----------
    candidates
        Candidate file (records parquet, extxyz or CSV with ``cif``).
    out_dir
        Writes ``relax/`` (see :func:`tasks.mlip.runner.run_relax`) and ``hull/``.
    mlip, relax, hull
        Settings (defaults: CHGNet, :class:`RelaxConfig`, :class:`MLIPHullConfig`: the
        papers' hull of every MP-20 / MPTS-52 phase from the shipped table).
    dask
        Where the chunks run (default: no Dask, ``relax.scheduler``).
    rule
        The stable / metastable thresholds.

    Returns
    -------
    Path
        The ``hull.parquet`` path.
    """
    out = Path(out_dir)
    screen = ScreenSettings(
        mlip=mlip or MLIPConfig(),
        relax=relax or RelaxConfig(),
        hull=hull or MLIPHullConfig(),
        stability=rule or StabilityRule(),
    )
    with dask_cluster(dask or DaskConfig(cluster="none")) as cluster:
        relaxed = relax_on(cluster, candidates, str(out / "relax"), screen.mlip, screen.relax)
        return Path(hull_on(cluster, relaxed, [], str(out / "hull"), screen))
