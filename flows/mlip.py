"""Prefect flow ``mlip-screen``: thin wrappers over :mod:`tasks.relax` and :mod:`tasks.hull`.

A relaxation is split into chunks by :func:`tasks.relax.relax_items` itself (process pool
or Dask cluster, one chunk per worker task), so the Prefect task is one per stage, not one
per structure (Prefect adds ~0.1 s per task).
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from tasks.hull import HullConfig, run_hull
from tasks.mlip import MLIPConfig
from tasks.relax import RelaxConfig, run_relax


@task(name="mlip-relax")
def relax_task(candidates: Path, out_dir: Path, mlip: MLIPConfig, config: RelaxConfig) -> Path:
    """Relax a candidate file into ``out_dir`` (resumable); returns ``relaxed.parquet``."""
    return run_relax(candidates, out_dir, mlip, config)


@task(name="mlip-hull")
def hull_task(relaxed: Path, reference: Path, out_dir: Path, config: HullConfig) -> Path:
    """E_hull of relaxed candidates against the MLIP hull; returns ``hull.parquet``."""
    return run_hull(relaxed, reference, out_dir, config=config)


@flow(name="mlip-screen")
def mlip_screen_flow(
    candidates: str,
    reference: str,
    out_dir: str = "runs/quick/mlip",
    mlip: MLIPConfig | None = None,
    relax: RelaxConfig | None = None,
    hull: HullConfig | None = None,
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

    Returns
    -------
    Path
        The ``hull.parquet`` path.
    """
    out = Path(out_dir)
    relaxed = relax_task(
        Path(candidates), out / "relax", mlip or MLIPConfig(), relax or RelaxConfig()
    )
    return hull_task(relaxed, Path(reference), out / "hull", hull or HullConfig())
