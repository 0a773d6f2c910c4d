"""The evaluation's numbers as typed records: what ``metrics.json`` holds, and the paper row.

:class:`EvaluationMetrics` is the contract of ``filters/metrics.json`` (same keys as
before); every count sits beside its rate so a figure can be traced to the verdict table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tasks.core.atomic import write_text_atomic


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DistributionMetrics(_Record):
    """Symmetry and distribution metrics of the structurally valid set (see distributions).

    ``symprec`` / ``angle_tolerance`` are the tolerances every symmetry figure was measured
    at (``None`` in files written before they were recorded, when the evaluation used 0.1 Å).
    """

    n_generated: int
    n_reference: int
    n_symmetry_failed: int
    p1_rate: float
    p1_count: int
    reference_p1_rate: float
    d_sg: float
    d_w: float
    d_n: float
    d_elements: float = float("nan")
    n_spacegroups: dict[str, int]
    orbits: dict[str, dict[str, float]]
    elements: dict[str, dict[str, float]]
    atoms: dict[str, dict[str, float]]
    symprec: float | None = None
    angle_tolerance: float | None = None
    #: the reference set's space groups and orbit counts (value → crystals), at the same
    #: tolerance, for the report's comparison plots (empty in files written before them)
    reference_histograms: dict[str, dict[int, int]] = {}

    @property
    def tolerance(self) -> str:
        """The symmetry tolerance as tables print it (:func:`tolerance_label`)."""
        return tolerance_label(self.symprec, self.angle_tolerance)


def tolerance_label(symprec: float | None, angle_tolerance: float | None) -> str:
    """A symmetry tolerance as every table and record prints it (``0.01 Å, 5°``)."""
    if symprec is None:
        return "0.1 Å (not recorded)"
    angle = "" if angle_tolerance is None else f", {angle_tolerance:g}°"
    return f"{symprec:g} Å{angle}"


class ReferenceInfo(_Record):
    """The reference (training) set novelty was judged against."""

    path: str
    fingerprint: str


class EvaluationMetrics(_Record):
    """Everything :func:`tasks.evaluate.funnel.evaluate_samples` measures, with counts."""

    n_samples: int
    n_unreadable: int
    structural_validity: float
    n_valid_struct: int
    compositional_validity: float
    n_valid_comp: int
    uniqueness: float
    n_unique: int
    n_novelty_draw: int
    novelty: float
    n_novel: int
    un_rate: float
    vun_rate: float
    n_dft_draw: int
    n_known: int = 0
    known_reference: list[str] = []
    distribution: DistributionMetrics
    reference: ReferenceInfo
    config: dict[str, Any]

    def write(self, path: str | Path) -> Path:
        """Write as JSON (NaN kept as ``NaN``, so nothing is silently turned into 0)."""
        return write_text_atomic(path, json.dumps(self.model_dump(), indent=2, sort_keys=True))

    @classmethod
    def read(cls, path: str | Path) -> EvaluationMetrics:
        """Inverse of :meth:`write`."""
        return cls.model_validate(json.loads(Path(path).read_text()))


def _pct(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.2f}"


PAPER_COLUMNS = (
    "method", "struct % (n)", "comp % (n)", "d_SG", "d_W", "d_N", "P1 % (n)", "U % (n)",
    "N % (novel/drawn)", "V.U.N. %", "symprec",
)  # fmt: skip


def paper_cells(metrics: EvaluationMetrics, name: str) -> list[str]:
    """The cells of the paper-style row (one per :data:`PAPER_COLUMNS`)."""
    d = metrics.distribution
    return [
        name,
        f"{_pct(metrics.structural_validity)} ({metrics.n_valid_struct})",
        f"{_pct(metrics.compositional_validity)} ({metrics.n_valid_comp})",
        f"{d.d_sg:.3f}",
        f"{d.d_w:.3f}",
        f"{d.d_n:.3f}",
        f"{_pct(d.p1_rate)} ({d.p1_count})",
        f"{_pct(metrics.uniqueness)} ({metrics.n_unique})",
        f"{_pct(metrics.novelty)} ({metrics.n_novel}/{metrics.n_novelty_draw})",
        _pct(metrics.vun_rate),
        d.tolerance,
    ]


def paper_row(metrics: EvaluationMetrics, name: str = "samples") -> str:
    """The paper-style markdown table (header + one row)."""
    header = "| " + " | ".join(PAPER_COLUMNS) + " |"
    rule = "|" + " --- |" * len(PAPER_COLUMNS)
    return f"{header}\n{rule}\n| " + " | ".join(paper_cells(metrics, name)) + " |"
