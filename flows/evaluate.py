"""Prefect flow ``evaluate``: one task per metric family, calling :mod:`tasks.evaluate`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from pymatgen.core import Structure

from tasks.distributions import SymmetryInfo
from tasks.evaluate import (
    EvaluateConfig,
    EvaluationResult,
    Reference,
    Stages,
    evaluate_samples,
    run_distributions,
    run_novelty,
    run_symmetry,
    run_uniqueness,
    run_validity,
    write_evaluation,
)
from tasks.structure_io import read_structures
from tasks.validity import ValidityVerdict


@task(name="evaluate-validity", cache_policy=NO_CACHE)
def validity_task(
    structures: Sequence[Structure | None], config: EvaluateConfig
) -> list[ValidityVerdict]:
    """Structural and compositional validity."""
    return run_validity(structures, config)


@task(name="evaluate-symmetry", cache_policy=NO_CACHE)
def symmetry_task(structures: Sequence[Structure], config: EvaluateConfig) -> list[SymmetryInfo]:
    """Space groups and Wyckoff letters of the valid structures."""
    return run_symmetry(structures, config)


@task(name="evaluate-uniqueness", cache_policy=NO_CACHE)
def uniqueness_task(structures: Sequence[Structure], config: EvaluateConfig) -> list[int]:
    """Unique-group labels of the valid structures."""
    return run_uniqueness(structures, config)


@task(name="evaluate-novelty", cache_policy=NO_CACHE)
def novelty_task(
    structures: Sequence[Structure], reference: Reference, config: EvaluateConfig
) -> list[str | None]:
    """Matched reference ids of the drawn valid and unique structures."""
    return run_novelty(structures, reference, config)


@task(name="evaluate-distributions", cache_policy=NO_CACHE)
def distributions_task(
    infos: Sequence[SymmetryInfo], reference: Reference, config: EvaluateConfig
) -> dict[str, object]:
    """P1 rate, d_SG, d_W, d_N and orbit/element statistics."""
    return run_distributions(infos, reference, config)


PREFECT_STAGES = Stages(
    validity=validity_task,
    symmetry=symmetry_task,
    uniqueness=uniqueness_task,
    novelty=novelty_task,
    distributions=distributions_task,
)


@flow(name="evaluate")
def evaluate_flow(
    samples: str,
    reference: str,
    out_dir: str,
    config: EvaluateConfig | None = None,
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
    """
    config = config or EvaluateConfig()
    entries = read_structures(samples)
    result = evaluate_samples(entries, Reference(Path(reference), config), config, PREFECT_STAGES)
    write_evaluation(result, out_dir, name=Path(samples).name)
    return result
