"""Flow ``discovery`` (deployment ``sun-eval``): the closed-loop S.U.N. estimation graph.

ingest → train or load a checkpoint → sample → validity / uniqueness / novelty → MLIP
relaxation + MLIP hull → pick candidates → DFT batch → S.U.N. estimate → report; then the
DFT-confirmed (meta)stable crystals join the reference set and the next round starts. With
``loop.finetune`` every model is first fine-tuned on the training set plus the crystals
confirmed so far, and the next round samples the fine-tuned checkpoint; with
``loop.mlip_finetune`` the MLIP is fine-tuned on the DFT results so far, and the next round
screens (relaxation and the whole hull) with that version, while the DFT stand-in's own
references stay those of the base MLIP.

This module is the graph only: every stage is a Prefect task that calls one function of
``tasks/`` or ``models/`` with its own config section, and whose inputs and outputs are files
under ``runs/<run id>/``. Tasks are cached on the content of their inputs
(:mod:`flows.caching`), so rerunning a run id after a crash redoes nothing that finished.
What a round means (its funnel, its rates, the report) is computed from those files by
:mod:`tasks.pipeline.summary` and :mod:`tasks.pipeline.report`.

The map-heavy stages (validity, uniqueness, novelty, MLIP relaxation of candidates and hull
references) are subflows whose chunks run as Prefect tasks on one Dask cluster started for
the run (``dask`` in the profile: a LocalCluster by default, an existing scheduler, or
SLURM jobs through dask-jobqueue; :mod:`flows.parallel`).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from flows.caching import run_stage, stage
from flows.evaluate import evaluate_on
from flows.mlip import hull_on, relax_on
from flows.model_work import run_model_work
from flows.parallel import OWN_PROCESS_PRELOAD, prefect_api_env
from models.contract import FineTune
from tasks.core.cluster import Cluster, dask_cluster
from tasks.core.config import ConfigError, Placement, load_config, resolve_config_path
from tasks.core.mapping import BACKGROUND_NICE, in_own_process
from tasks.core.paths import resolve_data_path
from tasks.core.structure_io import dataset_fingerprint
from tasks.dft.settings import DftStageConfig
from tasks.evaluate.settings import EvaluateConfig
from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.mlip.hull import reference_sources
from tasks.mlip.settings import MLIPConfig, RelaxConfig, ScreenSettings
from tasks.pipeline.checkpoints import write_checkpoint_info
from tasks.pipeline.config import (
    LoopConfig,
    ModelRun,
    PipelineConfig,
    check_overrides,
    check_profile_location,
)
from tasks.pipeline.loop import add_discoveries, finetune_dataset, round_discoveries
from tasks.pipeline.preflight import preflight
from tasks.pipeline.report import write_report
from tasks.pipeline.rundir import RunDir
from tasks.pipeline.screened import write_screened
from tasks.pipeline.selection import write_dft_candidates, write_mlip_candidates
from tasks.pipeline.summary import (
    RoundFiles,
    RoundSummary,
    dft_label,
    round_seed,
    summarize_round,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@task(name="ingest")
def ingest_stage(
    datasets: dict[str, DatasetSource], config: IngestConfig, out_dir: Path
) -> dict[str, str]:
    """Ingest every dataset of the profile (content-cached, so a rerun is instant)."""
    from tasks.ingest.run import ingest_sources

    results = ingest_sources(datasets, out_dir, config)
    return {key: str(r.dataset) for key, r in zip(datasets, results, strict=True)}


@stage("train")
def train_stage(
    model: ModelRun,
    dataset: str,
    out_dir: str,
    deployment: Annotated[str | None, Placement],
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """Train the model on the dataset (resuming a crashed run), or use its checkpoint."""
    return run_model_work(deployment, cluster, "train", model, dataset, out_dir, 0)


@stage("finetune-data")
def finetune_data_stage(
    train: str, discoveries: str, out_dir: str, ingest: IngestConfig, loop: LoopConfig
) -> str:
    """The training set plus every crystal confirmed so far, ingested like the training set."""
    return str(finetune_dataset(Path(train), Path(discoveries), Path(out_dir), ingest, loop))


@stage("finetune")
def finetune_stage(
    model: ModelRun,
    checkpoint: str,
    dataset: str,
    out_dir: str,
    loop: LoopConfig,
    deployment: Annotated[str | None, Placement],
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """Fine-tune the checkpoint a round sampled on the fine-tuning set (resumable)."""
    budget = FineTune(init_from=Path(checkpoint), **loop.budget())
    return run_model_work(deployment, cluster, "finetune", model, dataset, out_dir, 0, budget)


@stage("mlip-finetune")
def mlip_finetune_stage(
    dft_results: list[str], mlip: MLIPConfig, out_dir: str, loop: LoopConfig, seed: int
) -> str:
    """Fine-tune the base MLIP on every DFT result so far (a versioned checkpoint)."""
    from tasks.mlip.finetune import dft_training_points, finetune_mlip

    points = dft_training_points(dft_results)
    return str(finetune_mlip(points, mlip, out_dir, loop.mlip_epochs, loop.mlip_lr, seed))


@stage("sample")
def sample_stage(
    model: ModelRun,
    checkpoint: str,
    out_dir: str,
    seed: int,
    deployment: Annotated[str | None, Placement],
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """Draw the model's de novo samples; failed samples are kept with their reason."""
    return run_model_work(deployment, cluster, "sample", model, checkpoint, out_dir, seed)


@stage("import-samples")
def import_stage(model: ModelRun, fingerprint: str, out_dir: str) -> str:
    """Take another generator's crystals as the round's samples (``fingerprint``: their
    content, so an edited file is read again); unreadable entries are failed samples."""
    from models.sample_output import import_structure_set

    assert model.path is not None  # a samples entry always has one (ModelRun)
    path = resolve_data_path(model.path)
    return str(import_structure_set(path, model.key, out_dir, model.limit))


@stage("evaluate")
def evaluate_stage(
    samples: str,
    reference: str,
    discovered: list[str],
    out_dir: str,
    config: EvaluateConfig,
    known_reference: list[str],
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """Validity, uniqueness, novelty (vs the training set and the crystals earlier rounds
    confirmed), known phases, distributions."""
    evaluate_on(cluster, samples, reference, out_dir, config, known_reference, discovered)
    return str(Path(out_dir) / "verdicts.parquet")


@stage("mlip-relax")
def relax_stage(
    candidates: str,
    out_dir: str,
    mlip: MLIPConfig,
    relax: RelaxConfig,
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """Relax the V.U.N. candidates with the MLIP (chunked, resumable per chunk)."""
    return relax_on(cluster, candidates, out_dir, mlip, relax)


@stage("mlip-hull")
def hull_stage(
    relaxed: str,
    extra_references: list[str],
    out_dir: str,
    screen: ScreenSettings,
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """E_hull of every relaxed candidate against the same MLIP's hull of the competing phases
    (every MP-20 / MPTS-52 phase by default, plus the crystals earlier rounds confirmed)."""
    return hull_on(cluster, relaxed, extra_references, out_dir, screen)


@stage("dft-batch")
def dft_stage(
    candidates: str,
    extra_references: list[str],
    workdir: str,
    dft: DftStageConfig,
    screen: ScreenSettings,
    cluster: Annotated[Cluster | None, Placement],
) -> str:
    """Run the DFT batch (local stand-in, CP2K, or VASP on SLURM), wait, collect E_hull.

    ``screen`` is the profile's MLIP screen: the stand-in's references come from its hull,
    CP2K's competing phases are chosen on it, and its stability rule is the DFT hull's too.

    With a cluster (the models' branches side by side) the stand-in's calculations run in a
    process of their own: they change the working directory, which the other branches share
    in this process.
    """
    from tasks.dft.cp2k_stage import run_cp2k_stage
    from tasks.dft.stage import mlip_reference_entries, run_dft_stage

    if dft.mode == "cp2k":  # its calculations run in processes of their own
        results = run_cp2k_stage(
            Path(candidates), Path(workdir), dft, screen, extra_references, screen.stability
        )
        return str(results)
    if dft.mode != "standin":
        return str(run_dft_stage(Path(candidates), Path(workdir), dft, None, screen.stability))
    entries = mlip_reference_entries(Path(candidates), screen, extra_references)
    args = (Path(candidates), Path(workdir), dft, entries, screen.stability)
    if cluster is None:
        return str(run_dft_stage(*args))
    return str(
        in_own_process(run_dft_stage, *args, nice=BACKGROUND_NICE, preload=OWN_PROCESS_PRELOAD)
    )


def round_samples(
    config: PipelineConfig,
    model: ModelRun,
    checkpoint: str | None,
    files: RoundFiles,
    seed: int,
    cluster: Cluster | None,
) -> str:
    """The round's samples: drawn from the model's checkpoint, or a samples entry's file."""
    out_dir = str(files.root / "samples")
    if not model.generative:
        assert model.path is not None
        fingerprint = dataset_fingerprint(resolve_data_path(model.path))
        return run_stage(import_stage, model, fingerprint, out_dir)
    assert checkpoint is not None
    deployment = config.model_deployment
    samples = run_stage(sample_stage, model, checkpoint, out_dir, seed, deployment, cluster)
    write_checkpoint_info(checkpoint, files.checkpoint)
    return samples


def model_round(
    config: PipelineConfig,
    run: RunDir,
    model: ModelRun,
    checkpoint: str | None,
    reference: str,
    round_index: int,
    cluster: Cluster | None,
    discovered: list[str],
    screen: ScreenSettings,
) -> RoundSummary:
    """One model's pass through the funnel: sample → filters → MLIP → DFT, then its summary.

    A ``samples`` entry has no checkpoint: its file's crystals are the round's samples.

    The novelty reference is ``reference`` (the training set) plus the ``discovered`` sets
    (one per earlier round); the hull's competing phases are ``config.hull``'s plus the same
    ``discovered`` sets.
    ``screen`` is the MLIP screen the round relaxes and places candidates with (the
    profile's, or a fine-tuned MLIP's: :func:`tasks.mlip.finetune.finetuned_screen`); the
    DFT stand-in's references always come from the profile's (``config.screen``).
    """
    files = RoundFiles(run.round_dir(round_index) / model.key)
    seed = round_seed(config, model.seed, round_index)
    samples = round_samples(config, model, checkpoint, files, seed, cluster)
    known = [str(p) for p in reference_sources(config.hull)] + discovered
    verdicts = run_stage(
        evaluate_stage,
        samples,
        reference,
        discovered,
        str(files.filters),
        config.evaluate,
        known,
        cluster,
    )
    mlip_input = write_mlip_candidates(
        Path(samples), Path(verdicts), files.mlip_candidates, config.selection
    )
    if mlip_input is not None:
        relaxed = run_stage(
            relax_stage, str(mlip_input), str(files.relax_dir), screen.mlip, screen.relax, cluster
        )
        hull = run_stage(hull_stage, relaxed, discovered, str(files.hull_dir), screen, cluster)
        picks = None
        if config.dft.mode != "skip":
            picks = write_dft_candidates(
                Path(hull), Path(relaxed), files.dft_candidates, config.selection, seed
            )
        if picks is not None:
            run_stage(
                dft_stage,
                str(picks),
                discovered,
                str(files.dft_dir),
                config.dft,
                config.screen,
                cluster,
            )
    write_screened(files)
    return summarize_round(files.root, model.key, round_index, config, seed)


def with_earlier_dft(config: DftStageConfig, earlier: list[Path]) -> DftStageConfig:
    """The DFT stage config of a round whose hull also holds earlier rounds' results."""
    if not earlier:
        return config
    hull = config.hull.model_copy(
        update={"earlier_results": [*config.hull.earlier_results, *earlier]}
    )
    return config.model_copy(update={"hull": hull})


def finetune_data(config: PipelineConfig, run: RunDir, train: str, round_index: int) -> str | None:
    """After round k: add its confirmed crystals to the loop's discoveries and build the
    fine-tuning set of round k+1 (the training set plus all of them), or ``None`` while the
    loop has confirmed nothing (round k+1 then samples the same checkpoints)."""
    label = dft_label(config.dft.mode)
    new = [
        round_discoveries(
            RoundFiles(run.round_dir(round_index) / m.key), m.key, round_index,
            config.loop.evidence, label,
        )
        for m in config.models
    ]  # fmt: skip
    table = add_discoveries(run.path / "loop" / "discoveries.parquet", pd.concat(new))
    if pd.read_parquet(table).empty:
        log.info("round %d confirmed nothing: round %d samples the same checkpoints",
                 round_index, round_index + 1)  # fmt: skip
        return None
    out_dir = str(run.path / "loop" / f"round-{round_index + 1}")
    return run_stage(finetune_data_stage, train, str(table), out_dir, config.ingest, config.loop)


def round_checkpoint(
    config: PipelineConfig,
    run: RunDir,
    model: ModelRun,
    train: str,
    previous: str | None,
    finetune_set: str | None,
    round_index: int,
    cluster: Cluster | None,
) -> str | None:
    """The checkpoint a model samples in a round: trained in round 1, then fine-tuned on
    ``finetune_set`` when the loop learns (else ``previous``); ``None`` for a samples entry."""
    if not model.generative:
        return None
    deployment = config.model_deployment
    if previous is None:
        out_dir = str(run.path / "checkpoints" / model.key)
        return run_stage(train_stage, model, train, out_dir, deployment, cluster)
    if finetune_set is None:
        return previous
    out_dir = str(run.path / "checkpoints" / model.key / f"round-{round_index}")
    return run_stage(
        finetune_stage, model, previous, finetune_set, out_dir, config.loop, deployment, cluster
    )


@dataclass(frozen=True)
class RoundPlan:
    """What every model's branch of one round shares (the run, its settings, the loop's state
    after the previous round)."""

    config: PipelineConfig
    round_config: PipelineConfig  # the round's: its DFT hull holds earlier rounds' results
    run: RunDir
    train: str
    round_index: int
    cluster: Cluster | None
    checkpoints: dict[str, str | None]  # what each model sampled in the previous round
    finetune_set: str | None
    discovered: list[str]
    screen: ScreenSettings

    def branch(self, model: ModelRun) -> tuple[str | None, RoundSummary]:
        """One model's round: its checkpoint (trained, fine-tuned or kept), then the funnel."""
        checkpoint = round_checkpoint(
            self.config, self.run, model, self.train, self.checkpoints.get(model.key),
            self.finetune_set, self.round_index, self.cluster,
        )  # fmt: skip
        summary = model_round(
            self.round_config, self.run, model, checkpoint, self.train, self.round_index,
            self.cluster, self.discovered, self.screen,
        )  # fmt: skip
        return checkpoint, summary


def run_branches(
    branch: Callable[[ModelRun], T], models: list[ModelRun], side_by_side: bool
) -> list[T]:
    """``branch(model)`` for every model, at once (one thread each) when ``side_by_side``.

    The threads only orchestrate: with a Dask cluster, the work of a branch runs in other
    processes (the chunks of evaluation and relaxation on the cluster's workers; training,
    sampling and the stand-in's DFT jobs each in a process of its own), so on two cores two
    models' branches take about the time of the slower one. Without a cluster that work
    would share this process, so the branches run one after the other. Each thread runs in
    a copy of the flow run's context, so its stages are tasks of this flow run. The first
    branch to fail raises, after every branch has stopped.
    """
    width = max(1, len(models)) if side_by_side else 1
    with ThreadPoolExecutor(max_workers=width) as pool:
        futures = [pool.submit(contextvars.copy_context().run, branch, m) for m in models]
        wait(futures)
    return [f.result() for f in futures]


def closed_loop(
    config: PipelineConfig, run: RunDir, datasets: dict[str, str], cluster: Cluster | None
) -> dict[str, Any]:
    """All rounds, the models' branches side by side: train (round 1) or fine-tune (later
    rounds, with ``loop.finetune``), then sample → ... → DFT, with growing references."""
    train = datasets["train"]
    checkpoints: dict[str, str | None] = {}
    finetune_set: str | None = None
    earlier_dft: list[Path] = []
    discovered: list[str] = []
    screen = config.screen
    for round_index in range(1, config.rounds + 1):
        round_config = config.model_copy(update={"dft": with_earlier_dft(config.dft, earlier_dft)})
        plan = RoundPlan(
            config=config,
            round_config=round_config,
            run=run,
            train=train,
            round_index=round_index,
            cluster=cluster,
            checkpoints=dict(checkpoints),
            finetune_set=finetune_set,
            discovered=list(discovered),
            screen=screen,
        )
        results = run_branches(plan.branch, config.models, side_by_side=cluster is not None)
        checkpoints = {m.key: c for m, (c, _) in zip(config.models, results, strict=True)}
        summaries = [summary for _, summary in results]
        earlier_dft += [
            s.files["dft_results"].with_suffix(".json")
            for s in summaries
            if "dft_results" in s.files
        ]
        found = pd.concat([s.confirmed for s in summaries], ignore_index=True)
        if round_index == config.rounds:
            break
        if len(found):
            discovered = [*discovered, str(run.add_discovered(found, round_index))]
        if config.loop.finetune:
            finetune_set = finetune_data(config, run, train, round_index)
        if config.loop.mlip_finetune and earlier_dft:
            tuned = run_stage(
                mlip_finetune_stage,
                [str(p) for p in earlier_dft],
                config.mlip,
                str(run.path / "loop" / f"round-{round_index + 1}" / "mlip"),
                config.loop,
                round_seed(config, 0, round_index),
            )
            from tasks.mlip.finetune import finetuned_screen

            screen = finetuned_screen(config.screen, tuned)
    report = write_report(run.path)
    return {
        "run_id": run.run_id,
        "report": str(report.html),
        "metrics": report.metrics,
        "markdown": report.markdown,
    }


def check_parameters(profile: str, overrides: dict[str, Any] | None) -> PipelineConfig:
    """Load and validate the run's configuration before any work starts."""
    try:
        check_overrides(overrides or {})
        check_profile_location(resolve_config_path(profile))
        config = load_config(profile, PipelineConfig, overrides)
        if not config.models:
            raise ConfigError(f"profile {profile!r} lists no models to run")
        preflight(config)
    except ConfigError as err:
        raise ValueError(str(err)) from None
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
    config = check_parameters(profile, overrides)
    run = RunDir.open(config.run_root, run_id, config)
    logger = get_run_logger()
    logger.info("run %s in %s", run.run_id, run.path)
    datasets = ingest_stage(config.datasets, config.ingest, run.path / "dataset")
    with dask_cluster(config.dask, prefect_api_env()) as cluster:
        outcome = closed_loop(config, run, datasets, cluster)
    create_markdown_artifact(
        key="sun-report", markdown=outcome["markdown"], description=f"run {run.run_id}"
    )
    logger.info("report: %s", outcome["report"])
    return {k: v for k, v in outcome.items() if k != "markdown"}
