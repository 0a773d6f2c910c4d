"""Prefect flow ``evaluate``: :func:`tasks.evaluate.evaluate_samples` with its chunks as tasks.

Validity, symmetry and matching chunks run as Prefect tasks on the run's Dask cluster when
one is given (:mod:`flows.parallel`), else in ``config.workers`` local processes.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

from flows.parallel import cluster_mapper, on_cluster
from tasks.core.cluster import Cluster
from tasks.core.structure_io import read_structures
from tasks.evaluate.funnel import EvaluationResult, Reference, evaluate_samples, write_evaluation
from tasks.evaluate.settings import EvaluateConfig


@flow(name="evaluate")
def evaluate_flow(
    samples: str,
    reference: str,
    out_dir: str,
    config: EvaluateConfig | None = None,
    cluster: Cluster | None = None,
    known_reference: list[str] | None = None,
    extra_references: list[str] | None = None,
) -> EvaluationResult:
    """Evaluate a structure set against a reference dataset and write the outputs.

    Parameters
    ----------
    samples
        CIF folder, extxyz, parquet or CSV of the structures to evaluate.
    reference
        The training (reference) dataset in any of the same formats.
    out_dir
        Receives ``metrics.json``, ``verdicts.parquet``/``.csv`` and ``summary.md``.
    config
        Evaluation settings (default :class:`tasks.evaluate.EvaluateConfig`).
    cluster
        The run's Dask cluster; run this flow through :func:`evaluate_on` so its tasks go
        there. ``None``: local processes.
    known_reference
        Sets of known phases (the hull's) the novel crystals are checked against.
    extra_references
        Datasets that join the reference (crystals earlier rounds confirmed).
    """
    config = config or EvaluateConfig()
    mapper = cluster_mapper(cluster)
    entries = read_structures(samples)
    extra = tuple(Path(p) for p in extra_references or [])
    reference_set = Reference(Path(reference), config, mapper, extra)
    result = evaluate_samples(entries, reference_set, config, mapper, known_reference or [])
    write_evaluation(result, out_dir, name=Path(samples).name)
    return result


def evaluate_on(
    cluster: Cluster | None,
    samples: str,
    reference: str,
    out_dir: str,
    config: EvaluateConfig | None = None,
    known_reference: list[str] | None = None,
    extra_references: list[str] | None = None,
) -> EvaluationResult:
    """Run :func:`evaluate_flow` with its chunk tasks on ``cluster``."""
    subflow = on_cluster(evaluate_flow, cluster)
    return subflow(samples, reference, out_dir, config, cluster, known_reference, extra_references)
