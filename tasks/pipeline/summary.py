"""A round's summary, built from the files the round wrote: the funnel, the rates, the evidence.

Nothing here is handed over in memory by the flow: :func:`summarize_round` reads a model's
round directory (``round-<k>/<model>/``), so a report can be rebuilt from any run directory
(:func:`summarize_run`, ``discovery report RUN_DIR``) and every number names the files and
crystals behind it.

Layout of a round directory (every file optional but the samples)::

    samples/samples.parquet            every sample, failed ones with their reason
    filters/verdicts.parquet           one row per sample: validity, unique, novelty draw
    filters/metrics.json               EvaluationMetrics
    mlip/candidates.parquet            the V.U.N. crystals sent to the MLIP
    mlip/relax/relaxed.parquet         their relaxations
    mlip/hull/hull.parquet             their MLIP E_hull
    dft/candidates.parquet             the picks sent to DFT (relaxed structures)
    dft/dft_results.parquet            their DFT (or stand-in) outcome
    screened/screened.parquet          every relaxed crystal with its verdicts, energies, E_hull
    checkpoint.json                    the checkpoint the round sampled (id, training set size)
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from tasks.core.columns import Col
from tasks.evaluate.metrics import EvaluationMetrics
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.pipeline.checkpoints import CheckpointInfo
from tasks.pipeline.config import PipelineConfig
from tasks.pipeline.selection import evaluation_funnel
from tasks.pipeline.sun import FunnelStage, RateEstimate, funnel_rate, stability_estimates

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoundFiles:
    """Where one model's round keeps its files."""

    root: Path

    @property
    def samples(self) -> Path:
        """Every sample (``samples.parquet``)."""
        return self.root / "samples" / "samples.parquet"

    @property
    def filters(self) -> Path:
        """Output folder of the evaluation."""
        return self.root / "filters"

    @property
    def verdicts(self) -> Path:
        """One verdict row per sample."""
        return self.filters / "verdicts.parquet"

    @property
    def metrics(self) -> Path:
        """:class:`tasks.evaluate.metrics.EvaluationMetrics` of the samples."""
        return self.filters / "metrics.json"

    @property
    def mlip_candidates(self) -> Path:
        """The V.U.N. crystals sent to the MLIP screen."""
        return self.root / "mlip" / "candidates.parquet"

    @property
    def relax_dir(self) -> Path:
        """Output folder of the MLIP relaxation."""
        return self.root / "mlip" / "relax"

    @property
    def relaxed(self) -> Path:
        """The relaxations (``relaxed.parquet``)."""
        return self.relax_dir / "relaxed.parquet"

    @property
    def hull_dir(self) -> Path:
        """Output folder of the MLIP hull."""
        return self.root / "mlip" / "hull"

    @property
    def hull(self) -> Path:
        """MLIP E_hull of the relaxed candidates."""
        return self.hull_dir / "hull.parquet"

    @property
    def dft_dir(self) -> Path:
        """The DFT work directory."""
        return self.root / "dft"

    @property
    def dft_candidates(self) -> Path:
        """The picks sent to DFT."""
        return self.dft_dir / "candidates.parquet"

    @property
    def dft_results(self) -> Path:
        """Their DFT (or stand-in) outcome."""
        return self.dft_dir / "dft_results.parquet"

    @property
    def screened(self) -> Path:
        """Every screened crystal with its evidence (:mod:`tasks.pipeline.screened`)."""
        return self.root / "screened"

    @property
    def checkpoint(self) -> Path:
        """Which checkpoint the round sampled (a :class:`CheckpointInfo`)."""
        return self.root / "checkpoint.json"


#: How far a generated set may stray from the training set before the report flags it.
SANITY_LIMITS = {
    "distinct elements per crystal (mean)": 1.0,
    "Wyckoff orbits per crystal (mean)": 2.0,
    "atoms per primitive cell (mean)": 4.0,
    "P1 fraction": 0.2,
}


@dataclass(frozen=True)
class SanityRow:
    """One figure of the generated set beside the training set's, with its red flag."""

    quantity: str
    generated: float
    training: float
    limit: float | None

    @property
    def far_off(self) -> bool:
        """Whether the difference exceeds the limit."""
        return self.limit is not None and abs(self.generated - self.training) > self.limit


def sanity_rows(metrics: EvaluationMetrics) -> list[SanityRow]:
    """The generated set against the training set: means, P1 fraction and the distances."""
    d = metrics.distribution
    pairs = {
        "distinct elements per crystal (mean)": (d.elements, "mean"),
        "Wyckoff orbits per crystal (mean)": (d.orbits, "mean"),
        "atoms per primitive cell (mean)": (d.atoms, "mean"),
    }
    rows = [
        SanityRow(name, stat["generated"][key], stat["reference"][key], SANITY_LIMITS[name])
        for name, (stat, key) in pairs.items()
    ]
    rows.append(
        SanityRow("P1 fraction", d.p1_rate, d.reference_p1_rate, SANITY_LIMITS["P1 fraction"])
    )
    rows.append(SanityRow("d_SG (space groups, JS distance)", d.d_sg, 0.0, None))
    rows.append(SanityRow("d_N (atoms per cell, Wasserstein)", d.d_n, 0.0, None))
    rows.append(SanityRow("d_elements (element frequencies, JS distance)", d.d_elements, 0.0, None))
    return rows


@dataclass
class RoundSummary:
    """Everything the report shows for one model in one round, read from its files."""

    model: str
    round: int
    metrics: EvaluationMetrics
    funnel: list[FunnelStage]
    estimates: list[RateEstimate]
    files: dict[str, Path]
    generated_spacegroups: list[int] = field(default_factory=list)
    generated_orbits: list[int] = field(default_factory=list)
    e_hull: list[float] = field(default_factory=list)
    top_candidates: list[tuple[str, str, str]] = field(default_factory=list)  # id, JSON, flags
    sanity: list[SanityRow] = field(default_factory=list)
    hull: HullSummary | None = None  # what the MLIP hull was built from, its coverage
    #: the round-by-round figures: V.U.N., MLIP-stable share of V.U.N., DFT hit rate
    progress: list[RateEstimate] = field(default_factory=list)
    checkpoint: CheckpointInfo | None = None
    confirmed: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=[Col.ID, Col.STRUCTURE])
    )
    #: what the DFT energies are (code, functional, hull) and each pick's two verdicts
    dft_energies: str = ""
    dft_picks: list[DftPick] = field(default_factory=list)


@dataclass(frozen=True)
class DftPick:
    """One crystal sent to DFT: its MLIP E_hull beside the DFT one, or why there is none."""

    id: str
    formula: str
    e_hull_mlip: float
    e_hull_dft: float | None
    status: str
    reason: str


def dft_label(mode: str) -> str:
    """What the DFT step's numbers are: ``stand-in`` (an MLIP test double), ``CP2K`` (PBE on
    a hull of recomputed phases) or ``DFT`` (VASP on Materials Project's hull)."""
    return {"standin": "stand-in", "cp2k": "CP2K"}.get(mode, "DFT")


def summarize_round(
    root: Path, model: str, round_index: int, config: PipelineConfig, seed: int
) -> RoundSummary:
    """Summarize one model's round from its directory.

    Parameters
    ----------
    root
        ``round-<k>/<model>/`` (see the module docstring).
    model, round_index
        Which model and round.
    config
        The run's configuration (selection strategy, DFT mode).
    seed
        Seed of the intervals' Monte-Carlo draws.
    """
    files = RoundFiles(root)
    verdicts = pd.read_parquet(files.verdicts)
    funnel = evaluation_funnel(verdicts)
    summary = RoundSummary(
        model=model,
        round=round_index,
        metrics=EvaluationMetrics.read(files.metrics),
        funnel=funnel,
        estimates=[funnel_rate("V.U.N.", funnel, seed=seed)],
        files={"samples": files.samples, "verdicts": files.verdicts},
    )
    summary.sanity = sanity_rows(summary.metrics)
    summary.progress = [funnel_rate("V.U.N.", funnel, seed=seed)]
    if files.checkpoint.is_file():
        summary.checkpoint = CheckpointInfo.read(files.checkpoint)
    valid = verdicts[verdicts[Col.SPACEGROUP] > 0]
    summary.generated_spacegroups = [int(g) for g in valid[Col.SPACEGROUP]]
    summary.generated_orbits = [int(k) for k in valid[Col.N_ORBITS]]
    if not files.hull.is_file():
        return summary
    hull = pd.read_parquet(files.hull)
    relaxed = pd.read_parquet(files.relaxed).set_index(Col.ID)
    summary.files |= {"mlip_relaxed": files.relaxed, "mlip_hull": files.hull}
    if (files.screened / "screened.csv").is_file():
        summary.files["screened"] = files.screened / "screened.csv"
    placed = hull[hull[Col.E_HULL].notna()]
    mlip_stable = FunnelStage("MLIP stable", int(placed[Col.STABLE].sum()), len(hull))
    mlip_meta = FunnelStage("MLIP metastable", int(placed[Col.METASTABLE].sum()), len(hull))
    summary.e_hull = [float(v) for v in placed[Col.E_HULL]]
    top = placed.sort_values(Col.E_HULL).head(4)
    summary.top_candidates = [
        (i, relaxed.loc[i, Col.STRUCTURE], flags)
        for i, flags in zip(top[Col.ID], top["flags"], strict=True)
    ]
    summary.hull = HullSummary.read(files.hull_dir / HULL_SUMMARY)
    summary.funnel = [*funnel, mlip_stable]
    summary.estimates = stability_estimates(funnel, mlip_stable, mlip_meta, "MLIP", True, seed)
    if summary.hull.committee is not None:  # each member's own verdict beside the committee's
        for member in summary.hull.committee.members:
            stable = FunnelStage(
                f"MLIP stable ({member.label})",
                int(hull[f"stable_{member.label}"].sum()),
                len(hull),
            )
            meta = FunnelStage(
                f"MLIP metastable ({member.label})",
                int(hull[f"metastable_{member.label}"].sum()),
                len(hull),
            )
            label = f"MLIP {member.label} alone"
            summary.estimates += stability_estimates(funnel, stable, meta, label, True, seed)
    summary.progress.append(funnel_rate("MLIP stable / V.U.N.", [mlip_stable], seed=seed))
    if not files.dft_results.is_file():
        return summary
    dft = pd.read_parquet(files.dft_results)
    summary.files["dft_results"] = files.dft_results
    checked = dft[(dft[Col.DFT_STATUS] == "completed") & dft[Col.E_HULL_DFT].notna()]
    label = dft_label(config.dft.mode)
    stable = FunnelStage(f"{label} stable", int(checked[Col.STABLE].sum()), len(checked))
    meta = FunnelStage(f"{label} metastable", int(checked[Col.METASTABLE].sum()), len(checked))
    summary.funnel = [*funnel, mlip_stable, stable]
    unbiased = config.selection.strategy == "random"
    summary.estimates += stability_estimates(funnel, stable, meta, label, unbiased, seed)
    summary.progress.append(funnel_rate(f"hit rate ({label})", [stable], seed=seed))
    confirmed_ids = set(checked.loc[checked[Col.METASTABLE].astype(bool), Col.ID])
    picks = pd.read_parquet(files.dft_candidates)
    summary.confirmed = picks[picks[Col.ID].isin(confirmed_ids)]
    summary.dft_energies = config.dft.describe()  # a run directory refuses another config
    summary.dft_picks = dft_picks(dft, hull)
    return summary


def dft_picks(dft: pd.DataFrame, hull: pd.DataFrame) -> list[DftPick]:
    """The DFT results beside the first MLIP's E_hull of the same crystals."""
    mlip = dict(zip(hull[Col.ID], hull[Col.E_HULL].astype(float), strict=True))
    formulas = dict(zip(hull[Col.ID], hull[Col.FORMULA], strict=True))
    return [
        DftPick(
            id=str(row[Col.ID]),
            formula=str(row[Col.FORMULA] or formulas.get(row[Col.ID], "")),
            e_hull_mlip=mlip.get(row[Col.ID], math.nan),
            e_hull_dft=None if pd.isna(row[Col.E_HULL_DFT]) else float(row[Col.E_HULL_DFT]),
            status=str(row[Col.DFT_STATUS]),
            reason=str(row[Col.REASON] or ""),
        )
        for row in dft.to_dict(orient="records")
    ]


def round_seed(config: PipelineConfig, model_seed: int, round_index: int) -> int:
    """The seed of a model's round (sampling, draws, intervals)."""
    return config.seed + 1000 * round_index + model_seed


def summarize_run(run_dir: Path, config: PipelineConfig) -> list[RoundSummary]:
    """Every round of every model that has written its evaluation, in round order."""
    out = []
    for round_index in range(1, config.rounds + 1):
        for model in config.models:
            root = Path(run_dir) / f"round-{round_index}" / model.key
            if (RoundFiles(root).metrics).is_file():
                seed = round_seed(config, model.seed, round_index)
                out.append(summarize_round(root, model.key, round_index, config, seed))
    return out
