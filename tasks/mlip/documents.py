"""The MLIP screen's stage documents: the relaxation's metadata and the hull's summary.

:class:`RelaxMeta` is written by :func:`tasks.mlip.runner.run_relax` next to
``relaxed.parquet`` and read by the hull (which takes its MLIP and relaxation settings) and
the CLI; :class:`HullSummary` is written by :func:`tasks.mlip.hull.run_hull` next to
``hull.parquet`` and read by the round's summary and the CLI.
"""

from __future__ import annotations

from typing import Any

from tasks.core.documents import StageDocument
from tasks.core.stability import StabilityRule
from tasks.mlip.settings import MLIPConfig, MLIPHullConfig, RelaxConfig

RELAX_META = "relax_meta.json"
HULL_SUMMARY = "hull_summary.json"


class RelaxMeta(StageDocument):
    """What a relaxation run did: its MLIP and settings, and its counts."""

    mlip: MLIPConfig
    mlip_name: str
    mlip_version: str
    relax: RelaxConfig
    settings_key: str
    single_point: bool
    candidates: str
    n_candidates: int
    n_relaxed_this_run: int
    n_lost_to_worker_failures: int
    status_counts: dict[str, int]
    n_converged: int
    wall_s: float


class HullSummary(StageDocument):
    """What a hull placed its candidates on, how well it covers them, and the counts."""

    mlip_version: str
    reference: str  # what the references and their energies are, for reports
    reference_sources: str | list[str]
    extra_references: list[str]
    n_reference_phases: int
    reference_single_point: bool
    candidate_single_point: bool
    n_candidates: int
    n_on_hull: int
    n_stable: int
    n_metastable: int
    n_flagged: int
    n_uncovered: int
    n_stable_flagged: int
    references: dict[str, Any]  # how the reference energies were obtained (counts)
    cache_dir: str
    relax: RelaxConfig
    config: MLIPHullConfig
    stability: StabilityRule
    wall_s: float
    warning: str = ""
