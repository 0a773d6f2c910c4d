"""The MLIP screen's stage documents: the relaxation's metadata and the hull's summary.

:class:`RelaxMeta` is written by :func:`tasks.mlip.runner.run_relax` next to
``relaxed.parquet`` and read by the hull (which takes its MLIP and relaxation settings) and
the CLI; :class:`HullSummary` is written by :func:`tasks.mlip.hull_stage.run_hull` next to
``hull.parquet`` and read by the round's summary and the CLI.
"""

from __future__ import annotations

from typing import Any

from tasks.core.config import StrictModel
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


class MemberSummary(StrictModel):
    """One committee member's verdicts on the candidates."""

    label: str
    mlip_version: str
    reference: str
    relax_steps: int
    n_on_hull: int
    n_stable: int
    n_metastable: int
    published: str
    wall_s: float


class CommitteeSummary(StrictModel):
    """The committee of a hull: its members (the first relaxed) and how they agreed."""

    members: list[MemberSummary]
    min_agree: int
    n_disagree_stable: int
    n_disagree_metastable: int

    def describe(self) -> str:
        """One line for reports."""
        names = ", ".join(f"{m.label} ({m.mlip_version}; {m.published})" for m in self.members)
        return (
            f"MLIP committee of {len(self.members)}: {names}; a crystal counts as (meta)stable "
            f"when {self.min_agree} of {len(self.members)} agree; disagreements flagged: "
            f"{self.n_disagree_stable} on stability, {self.n_disagree_metastable} on "
            "metastability"
        )


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
    committee: CommitteeSummary | None = None  # with further MLIPs: who said what
