"""Flow ``discovery`` (deployment ``sun-eval``): the closed-loop S.U.N. estimation graph.

ingest → train or load a checkpoint → sample → validity / uniqueness / novelty → MLIP
relaxation + MLIP hull → pick candidates → DFT batch → S.U.N. estimate → report; then the
DFT-confirmed (meta)stable crystals join the reference set and the next round starts.

Every stage is a Prefect task whose inputs and outputs are files under
``runs/<run id>/``; tasks are cached on the content of their inputs (dataset, checkpoint and
config hashes) with persisted results, so rerunning a run id after a crash redoes nothing
that finished. The stage functions themselves live in ``tasks/`` and ``models/``.

The map-heavy stages (validity, uniqueness, novelty, MLIP relaxation of candidates and hull
references) are subflows whose chunks run as Prefect tasks on one Dask cluster started for
the run (``dask`` in the profile: a LocalCluster by default, an existing scheduler, or
SLURM jobs through dask-jobqueue; :mod:`flows.parallel`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from pydantic import BaseModel

from flows.evaluate import evaluate_on
from flows.mlip import hull_on, relax_on
from flows.model_work import run_model_work
from flows.parallel import Cluster, dask_cluster
from tasks.atomic import write_json_atomic, write_text_atomic
from tasks.config import ConfigError, config_hash, load_config
from tasks.pipeline_config import ModelRun, PipelineConfig
from tasks.report import ModelReport, html_report, markdown_report, spacegroups_and_orbits
from tasks.rundir import RunDir
from tasks.sun import FunnelStage, estimate_as_dict, funnel_rate

log = logging.getLogger(__name__)


def _digest(value: Any) -> str:
    """Content digest of a stage input: files by bytes, configs by value."""
    if isinstance(value, BaseModel):
        return config_hash(value)
    if isinstance(value, str | Path) and Path(value).is_file():
        return hashlib.sha256(Path(value).read_bytes()).hexdigest()[:16]
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


#: Stage parameters that say where work runs, not what it computes (not in the cache key).
PLACEMENT = frozenset({"cluster", "deployment"})


def input_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of a stage: its name plus the digests of all its inputs."""
    parts = [context.task.name] + [
        f"{k}={_digest(v)}" for k, v in sorted(parameters.items()) if k not in PLACEMENT
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


STAGE = {"cache_key_fn": input_cache_key, "persist_result": True}


@task(name="ingest")
def ingest_stage(config: PipelineConfig, out_dir: Path) -> dict[str, str]:
    """Ingest every dataset of the profile (content-cached, so a rerun is instant)."""
    from tasks.ingest import ingest_sources

    results = ingest_sources(config.datasets, out_dir, config.ingest)
    return {key: str(r.dataset) for key, r in zip(config.datasets, results, strict=True)}


@task(name="train", **STAGE)
def train_stage(model: ModelRun, dataset: str, out_dir: str, deployment: str | None) -> str:
    """Train the model on the dataset (resuming a crashed run), or use its checkpoint."""
    return run_model_work(deployment, "train", model, dataset, out_dir, 0)


@task(name="sample", **STAGE)
def sample_stage(
    model: ModelRun, checkpoint: str, out_dir: str, seed: int, deployment: str | None
) -> str:
    """Draw the model's de novo samples; failed samples are kept with their reason."""
    return run_model_work(deployment, "sample", model, checkpoint, out_dir, seed)


@task(name="evaluate", **STAGE)
def evaluate_stage(
    samples: str, reference: str, out_dir: str, config: PipelineConfig, cluster: Cluster | None
) -> str:
    """Validity, uniqueness, novelty and distribution metrics against the reference set."""
    evaluate_on(cluster, samples, reference, out_dir, config.evaluate)
    return str(Path(out_dir) / "verdicts.parquet")


@task(name="mlip-relax", **STAGE)
def relax_stage(
    candidates: str, out_dir: str, config: PipelineConfig, cluster: Cluster | None
) -> str:
    """Relax the V.U.N. candidates with the MLIP (chunked, resumable per chunk)."""
    relax_on(cluster, candidates, out_dir, config.mlip, config.relax)
    return out_dir


@task(name="mlip-hull", **STAGE)
def hull_stage(
    relaxed: str, reference: str, out_dir: str, config: PipelineConfig, cluster: Cluster | None
) -> str:
    """E_hull of every relaxed candidate against the same MLIP's hull of the reference."""
    return hull_on(cluster, relaxed, reference, out_dir, config.mlip, config.relax, config.hull)


@task(name="dft-batch", **STAGE)
def dft_stage(candidates: str, reference: str, workdir: str, config: PipelineConfig) -> str:
    """Run the DFT batch (local stand-in or SLURM), wait, collect E_hull."""
    from tasks.dft_stage import mlip_reference_entries, run_dft_stage

    entries = None
    if config.dft.mode == "standin":
        entries = mlip_reference_entries(
            Path(candidates), Path(reference), config.mlip, config.relax, config.hull
        )
    return str(run_dft_stage(Path(candidates), Path(workdir), config.dft, entries))


def model_round(
    config: PipelineConfig,
    run: RunDir,
    model: ModelRun,
    checkpoint: str,
    reference: str,
    round_index: int,
    cluster: Cluster | None,
) -> ModelReport:
    """One model's pass through the funnel: sample → filters → MLIP → DFT → estimate."""
    from tasks.evaluate import paper_row
    from tasks.selection import evaluation_funnel, pick_for_dft, vun_ids, write_candidates

    stage_dir = run.round_dir(round_index) / model.name
    seed = config.seed + 1000 * round_index + model.seed
    samples = sample_stage(
        model, checkpoint, str(stage_dir / "samples"), seed, config.model_deployment
    )
    verdicts_path = evaluate_stage(samples, reference, str(stage_dir / "filters"), config, cluster)
    verdicts = pd.read_parquet(verdicts_path)
    funnel = evaluation_funnel(verdicts)
    vun = vun_ids(verdicts)[: config.selection.max_relax]
    files = {"samples": Path(samples), "verdicts": Path(verdicts_path)}
    metrics = json.loads((stage_dir / "filters" / "metrics.json").read_text())
    report = ModelReport(
        model=model.name,
        round=round_index,
        paper_row=paper_row(metrics, model.name),
        funnel=funnel,
        estimates=[],
        files=files,
    )
    report.generated_spacegroups, report.generated_orbits = spacegroups_and_orbits(verdicts)
    if not vun:
        report.estimates = [funnel_rate("V.U.N.", funnel, seed=seed)]
        return report
    candidates = write_candidates(
        vun, pd.read_parquet(samples), stage_dir / "mlip" / "candidates.parquet"
    )
    relaxed = relax_stage(str(candidates), str(stage_dir / "mlip" / "relax"), config, cluster)
    hull_path = hull_stage(relaxed, reference, str(stage_dir / "mlip" / "hull"), config, cluster)
    hull = pd.read_parquet(hull_path)
    files |= {"mlip_relaxed": Path(relaxed) / "relaxed.parquet", "mlip_hull": Path(hull_path)}
    placed = hull[hull["e_hull"].notna()]
    mlip_stage = FunnelStage("MLIP stable", int(placed["stable"].sum()), len(hull))
    mlip_meta = FunnelStage("MLIP metastable", int(placed["metastable"].sum()), len(hull))
    report.e_hull = [float(v) for v in placed["e_hull"]]
    top = placed.sort_values("e_hull").head(4)
    relaxed_table = pd.read_parquet(Path(relaxed) / "relaxed.parquet").set_index("id")
    report.top_candidates = [(i, relaxed_table.loc[i, "structure"]) for i in top["id"]]
    report.funnel = [*funnel, mlip_stage]
    report.estimates = [
        funnel_rate("S.U.N. (MLIP)", [*funnel, mlip_stage], seed=seed),
        funnel_rate("M.S.U.N. (MLIP)", [*funnel, mlip_meta], seed=seed),
    ]
    if config.dft.mode == "skip" or config.selection.n_dft == 0:
        return report
    chosen = pick_for_dft(hull, config.selection.n_dft, config.selection.strategy, seed)
    dft_candidates = write_candidates(
        chosen, relaxed_table.reset_index(), stage_dir / "dft" / "candidates.parquet"
    )
    dft_path = Path(dft_stage(str(dft_candidates), reference, str(stage_dir / "dft"), config))
    dft = pd.read_parquet(dft_path)
    files["dft_results"] = dft_path
    checked = dft[dft["dft_status"] != "rejected"]
    label = "stand-in" if config.dft.mode == "standin" else "DFT"
    stable = FunnelStage(f"{label} stable", int(checked["stable"].sum()), len(checked))
    meta = FunnelStage(f"{label} metastable", int(checked["metastable"].sum()), len(checked))
    report.funnel = [*funnel, mlip_stage, stable]
    if config.selection.strategy == "random":  # an unbiased draw: the papers' S.U.N. product
        report.estimates += [
            funnel_rate(f"S.U.N. ({label})", [*funnel, stable], seed=seed),
            funnel_rate(f"M.S.U.N. ({label})", [*funnel, meta], seed=seed),
        ]
    else:  # the lowest MLIP E_hull were picked: a hit rate, not an estimate of S.U.N.
        report.estimates += [
            funnel_rate(f"stable among ranked picks ({label})", [stable], seed=seed),
            funnel_rate(f"metastable among ranked picks ({label})", [meta], seed=seed),
        ]
    confirmed_ids = set(checked.loc[checked["metastable"].astype(bool), "id"])
    chosen_rows = pd.read_parquet(dft_candidates)
    report.confirmed = chosen_rows[chosen_rows["id"].isin(confirmed_ids)]
    return report


def with_earlier_dft(config: PipelineConfig, earlier: list[Path]) -> PipelineConfig:
    """The configuration of a round whose DFT hull also holds earlier rounds' results."""
    if not earlier:
        return config
    hull = config.dft.hull
    hull = hull.model_copy(update={"earlier_results": [*hull.earlier_results, *earlier]})
    return config.model_copy(update={"dft": config.dft.model_copy(update={"hull": hull})})


def closed_loop(
    config: PipelineConfig, run: RunDir, datasets: dict[str, str], cluster: Cluster | None
) -> dict[str, Any]:
    """All rounds: train once per model, then sample → ... → DFT with growing references."""
    reference = datasets["train"]
    checkpoints = {
        m.name: train_stage(
            m, datasets["train"], str(run.path / "checkpoints" / m.name), config.model_deployment
        )
        for m in config.models
    }
    reports: list[ModelReport] = []
    earlier_dft: list[Path] = []
    for round_index in range(1, config.rounds + 1):
        round_config = with_earlier_dft(config, earlier_dft)
        confirmed = []
        for model in config.models:
            report = model_round(
                round_config, run, model, checkpoints[model.name], reference, round_index, cluster
            )
            reports.append(report)
            confirmed.append(report.confirmed)
            if "dft_results" in report.files:
                earlier_dft.append(report.files["dft_results"].with_suffix(".json"))
        found = pd.concat(confirmed, ignore_index=True)
        if len(found) and round_index < config.rounds:
            reference = str(run.add_discovered(reference, found, round_index))
    train = pd.read_parquet(datasets["train"])
    train = train[train["status"] == "ok"]
    standin = config.dft.mode == "standin" and any("dft_results" in r.files for r in reports)
    markdown = markdown_report(reports, run.report_dir, standin)
    report = html_report(
        reports, list(train["spacegroup"]), list(train["n_orbits"]), run.report_dir, standin
    )
    write_text_atomic(run.report_dir / "report.md", markdown)
    metrics = {
        f"{r.model}/round{r.round}": {e.name: estimate_as_dict(e) for e in r.estimates}
        for r in reports
    }
    write_json_atomic(run.path / "metrics.json", metrics)
    return {"run_id": run.run_id, "report": str(report), "metrics": metrics, "markdown": markdown}


def _check_parameters(profile: str, overrides: dict[str, Any] | None) -> PipelineConfig:
    """Load and validate the run's configuration before any work starts."""
    try:
        config = load_config(profile, PipelineConfig, overrides)
    except ConfigError as err:
        raise ValueError(str(err)) from None
    if not config.models:
        raise ValueError(f"profile {profile!r} lists no models to run")
    return config


@flow(name="discovery", log_prints=False)
def discovery_flow(
    profile: str = "quick",
    run_id: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The closed-loop S.U.N. estimation (deployment ``discovery/sun-eval``).

    Parameters
    ----------
    profile
        A profile in ``configs/`` (``quick``, ``benchmark``) or a YAML path.
    run_id
        Reuse a run directory (resume after a crash); default: a new id.
    overrides
        Dotted-key overrides of the profile, e.g. ``{"rounds": 2, "seed": 1}``.

    Returns
    -------
    dict
        Paths of the report and metrics, and the S.U.N. estimates per model and round.
    """
    config = _check_parameters(profile, overrides)
    run = RunDir.open(config.run_root, run_id, config)
    logger = get_run_logger()
    logger.info("run %s in %s", run.run_id, run.path)
    datasets = ingest_stage(config, run.path / "dataset")
    with dask_cluster(config.dask) as cluster:
        outcome = closed_loop(config, run, datasets, cluster)
    create_markdown_artifact(
        key="sun-report", markdown=outcome["markdown"], description=f"run {run.run_id}"
    )
    logger.info("report: %s", outcome["report"])
    return {k: v for k, v in outcome.items() if k != "markdown"}
