"""Settings of the evaluation: validity thresholds, matcher tolerances, draws, CSP options.

Kept apart from the code that uses them so that loading a profile imports no pymatgen
analysis module.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from tasks.core.checks import MIN_DISTANCE, MIN_VOLUME
from tasks.core.config import Placement, StrictModel

if TYPE_CHECKING:
    from pymatgen.analysis.structure_matcher import StructureMatcher

OxidationSet = Literal["smact14", "icsd24", "default"]


class LeMatBounds(StrictModel):
    """Physical-plausibility bounds of the LeMat-GenBench-style filter (our choices)."""

    min_density: float = Field(default=0.5, ge=0, description="g/cm^3")
    max_density: float = Field(default=25.0, gt=0, description="g/cm^3")
    min_length: float = Field(default=1.0, ge=0, description="shortest lattice vector (Å)")
    max_length: float = Field(default=100.0, gt=0, description="longest lattice vector (Å)")
    min_angle: float = Field(default=20.0, ge=0, description="deg")
    max_angle: float = Field(default=160.0, le=180, description="deg")
    symprec: float = Field(default=0.1, gt=0)


class ValidityConfig(StrictModel):
    """Validity thresholds and options."""

    min_distance: float = Field(default=MIN_DISTANCE, ge=0, description="Å")
    min_volume: float = Field(default=MIN_VOLUME, ge=0, description="Å^3")
    oxidation_set: OxidationSet = "smact14"
    pauling_test: bool = True
    include_alloys: bool = True
    variant: Literal["cdvae", "lemat"] = "cdvae"
    lemat: LeMatBounds = Field(default_factory=LeMatBounds)


class MatcherConfig(StrictModel):
    """StructureMatcher tolerances (ADiT's values by default) and parallelism."""

    stol: float = Field(default=0.5, gt=0, description="site tolerance, fraction of (V/N)^(1/3)")
    ltol: float = Field(default=0.3, gt=0, description="fractional lattice length tolerance")
    angle_tol: float = Field(default=10.0, gt=0, description="lattice angle tolerance (deg)")
    workers: Annotated[int, Placement] = Field(
        default=1, ge=1, description="worker processes (1 = in process)"
    )

    def build(self) -> StructureMatcher:
        """The matcher, with every setting the bucketing argument relies on made explicit."""
        from pymatgen.analysis.structure_matcher import StructureMatcher

        return StructureMatcher(
            ltol=self.ltol,
            stol=self.stol,
            angle_tol=self.angle_tol,
            primitive_cell=True,
            scale=True,
            attempt_supercell=False,
            allow_subset=False,
        )

    def settings(self) -> dict[str, float]:
        """The tolerances that change verdicts (cache keys use these, not ``workers``)."""
        return {"stol": self.stol, "ltol": self.ltol, "angle_tol": self.angle_tol}


class EvaluateConfig(StrictModel):
    """Settings of ``discovery evaluate``."""

    seed: int = 0
    novelty_draw: int = Field(default=1000, gt=0, description="valid+unique drawn for novelty")
    dft_draw: int = Field(default=100, gt=0, description="V.U.N. drawn for DFT")
    workers: Annotated[int, Placement] = Field(default=1, ge=1)
    symprec: float = Field(
        default=0.01,
        gt=0,
        description=(
            "symmetry tolerance (Å) of P1, d_SG, d_W, d_N and the orbit statistics, generated "
            "and reference sets alike; 0.01 = pymatgen's default, as the published tables"
        ),
    )
    angle_tolerance: float = Field(default=5.0, gt=0, description="degrees (pymatgen's default)")
    matcher: MatcherConfig = Field(default_factory=MatcherConfig)
    validity: ValidityConfig = Field(default_factory=ValidityConfig)
    cache_dir: Annotated[Path | None, Placement] = Field(
        default=None, description="reference caches; default data/cache"
    )

    @property
    def tolerance(self) -> str:
        """The symmetry tolerance as records and reports state it (``0.01 Å, 5°``)."""
        from tasks.evaluate.metrics import tolerance_label

        return tolerance_label(self.symprec, self.angle_tolerance)

    def matcher_config(self) -> MatcherConfig:
        """The matcher settings with this run's worker count."""
        return self.matcher.model_copy(update={"workers": self.workers})


class CSPConfig(StrictModel):
    """CSP evaluation settings."""

    matcher: MatcherConfig = Field(default_factory=MatcherConfig)
    validity: ValidityConfig = Field(default_factory=ValidityConfig)
    require_valid: Literal["none", "structural", "both"] = "structural"
    k_values: tuple[int, ...] = (1, 20)
