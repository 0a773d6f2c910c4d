"""The whole pipeline's configuration: one YAML profile validated into one typed object.

Each stage owns its settings model (next to its code); this module composes them. Profiles
live in ``configs/`` (``quick``: the embedded default; ``benchmark``: the shared MP-20
splits). Load with ``load_config("quick", PipelineConfig)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from tasks.config import DatasetSource, IngestConfig, StrictModel
from tasks.dft import DftSettings
from tasks.dft_hull import HullConfig as DftHullConfig
from tasks.evaluate import EvaluateConfig
from tasks.hpc import SlurmSettings
from tasks.hull import HullConfig as MLIPHullConfig
from tasks.mlip import MLIPConfig
from tasks.relax import RelaxConfig

MODEL_NAMES = ("symadit", "mcflow")


class ModelRun(StrictModel):
    """One generative model in a run: train it (or load a checkpoint) and sample from it."""

    name: Literal["symadit", "mcflow"]
    profile: str = Field(default="tiny", description="model config: configs/<name>/<profile>.yaml")
    checkpoint: Path | None = Field(default=None, description="load this instead of training")
    n_samples: int = Field(default=64, gt=0)
    steps: int | None = Field(default=None, gt=0, description="integration steps (model default)")
    seed: int = 0


class SelectionConfig(StrictModel):
    """Which V.U.N. candidates go to the MLIP screen and then to DFT."""

    strategy: Literal["ranked", "random"] = Field(
        default="ranked",
        description="ranked: lowest MLIP E_hull first; random: the paper's unbiased draw",
    )
    max_relax: int = Field(default=64, gt=0, description="V.U.N. candidates relaxed by the MLIP")
    n_dft: int = Field(default=4, ge=0, description="candidates sent to DFT per round")


class DftStageConfig(StrictModel):
    """The DFT stage: how calculations run and how results are judged."""

    mode: Literal["standin", "slurm", "skip"] = Field(
        default="standin",
        description="standin: local MLIP-driven VASP double (not DFT); slurm: real cluster",
    )
    dft: DftSettings = Field(default_factory=DftSettings)
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    hull: DftHullConfig = Field(default_factory=DftHullConfig)
    poll_s: float = Field(default=5.0, gt=0)
    timeout_s: float | None = Field(default=None, gt=0)


class JobqueueConfig(StrictModel):
    """Dask workers as SLURM jobs (``dask_jobqueue.SLURMCluster``), for ``cluster: slurm``.

    Each job runs ``processes`` single-threaded worker processes on ``cores`` cores.
    ``job_script_prologue`` lines run before the worker starts (``module load``, activating
    the project's environment).
    """

    queue: str | None = Field(default=None, description="SLURM partition")
    account: str | None = None
    jobs: int = Field(default=1, gt=0, description="SLURM jobs (each a group of workers)")
    cores: int = Field(default=4, gt=0)
    processes: int = Field(default=4, gt=0)
    memory: str = "16GB"
    walltime: str = "02:00:00"
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    log_directory: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> JobqueueConfig:
        if self.processes > self.cores:
            raise ValueError(f"processes ({self.processes}) > cores ({self.cores})")
        return self


class DaskConfig(StrictModel):
    """Where the chunked, map-heavy stages (validity, matching, relaxation) run.

    ``local``: a LocalCluster of single-threaded worker processes started for the run;
    ``address``: an existing scheduler; ``slurm``: a dask-jobqueue cluster; ``none``: no
    Dask (each stage uses its own settings: ``evaluate.workers``, ``relax.scheduler``).
    """

    cluster: Literal["local", "address", "slurm", "none"] = "local"
    address: str | None = Field(default=None, description="scheduler for cluster: address")
    n_workers: int = Field(default=0, ge=0, description="LocalCluster processes; 0 = all cores")
    memory_limit: str = Field(default="auto", description="per LocalCluster worker")
    tasks_per_worker: int = Field(
        default=4, gt=0, description="Prefect tasks per worker for a stage's chunks"
    )
    slurm: JobqueueConfig = Field(default_factory=JobqueueConfig)

    @model_validator(mode="after")
    def _check(self) -> DaskConfig:
        if (self.cluster == "address") != (self.address is not None):
            raise ValueError("address: give a scheduler address exactly when cluster is 'address'")
        return self


class PipelineConfig(StrictModel):
    """The resolved configuration of one run (every stage's settings)."""

    profile: str = "quick"
    seed: int = 0
    run_root: Path = Path("runs")
    rounds: int = Field(default=1, ge=1)
    model_deployment: str | None = Field(
        default=None,
        pattern=r"^[^/]+/[^/]+$",
        description="deployment that trains and samples (e.g. model-work/gpu); None = here",
    )
    datasets: dict[str, DatasetSource] = Field(default_factory=dict)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    models: list[ModelRun] = Field(default_factory=list)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    mlip: MLIPConfig = Field(default_factory=MLIPConfig)
    relax: RelaxConfig = Field(default_factory=RelaxConfig)
    hull: MLIPHullConfig = Field(default_factory=MLIPHullConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    dft: DftStageConfig = Field(default_factory=DftStageConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError(f"models: each model may appear once, got {names}")
        if self.models and "train" not in self.datasets:
            raise ValueError("datasets: a 'train' dataset is needed to train and judge novelty")
        return self
