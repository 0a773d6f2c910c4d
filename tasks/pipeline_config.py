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


class DaskConfig(StrictModel):
    """Where chunked, map-heavy stages run."""

    address: str | None = Field(default=None, description="existing scheduler; None = local")
    n_workers: int = Field(default=0, ge=0, description="LocalCluster processes; 0 = all cores")


class PipelineConfig(StrictModel):
    """The resolved configuration of one run (every stage's settings)."""

    profile: str = "quick"
    seed: int = 0
    run_root: Path = Path("runs")
    rounds: int = Field(default=1, ge=1)
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
