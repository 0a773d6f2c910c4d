"""The whole pipeline's configuration: one YAML profile validated into one typed object.

Each stage owns its settings model (in its wing's ``settings``/``config`` module, which
imports nothing heavy); this module composes them. Profiles live in ``configs/`` (``quick``:
the embedded default; ``benchmark``: the shared MP-20 splits). Load with
``load_config("quick", PipelineConfig)``.

Keys renamed since earlier profiles are still accepted (:data:`RENAMED_KEYS`): the E_hull
thresholds of both hulls now live in one ``stability`` section.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tasks.core.cluster import DaskConfig
from tasks.core.config import Placement, StrictModel
from tasks.core.paths import REPO_ROOT
from tasks.core.stability import StabilityRule
from tasks.dft.settings import DftStageConfig
from tasks.evaluate.settings import EvaluateConfig
from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.mlip.settings import (
    CommitteeConfig,
    MLIPConfig,
    MLIPHullConfig,
    RelaxConfig,
    ScreenSettings,
)

log = logging.getLogger(__name__)

#: Old dotted key → its place now (both hulls' thresholds became ``stability``).
RENAMED_KEYS = {
    "hull.stable_threshold": "stability.stable_below",
    "hull.metastable_threshold": "stability.metastable_below",
    "dft.hull.stable_below": "stability.stable_below",
    "dft.hull.metastable_below": "stability.metastable_below",
}


def _pop_dotted(data: dict[str, Any], dotted: str) -> tuple[bool, Any]:
    node: Any = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and leaf in node:
        return True, node.pop(leaf)
    return False, None


def migrate_renamed_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Move renamed keys to their new place (a conflict between old and new is an error)."""
    data = copy.deepcopy(data)
    for old, new in RENAMED_KEYS.items():
        found, value = _pop_dotted(data, old)
        if not found:
            continue
        section, leaf = new.split(".")
        target = data.setdefault(section, {})
        if leaf in target and target[leaf] != value:
            raise ValueError(
                f"'{old}' (now '{new}') = {value} contradicts '{new}' = {target[leaf]}"
            )
        target[leaf] = value
        log.warning("config key '%s' is now '%s'", old, new)
    return data


#: Names of run directories and report rows (a model entry's ``key``).
KEY_PATTERN = r"^[A-Za-z0-9._+-]+$"


class ModelRun(StrictModel):
    """One generator in a run.

    ``symadit`` and ``mcflow`` are trained (or loaded from ``checkpoint``) and sampled;
    ``samples`` takes crystals another generator already made (``path``: a CIF folder,
    extxyz, parquet or CSV, read by the one structure reader, the first ``limit`` entries)
    and skips training and sampling, so any generator goes through the same validity, U/N,
    MLIP, hull, DFT and report. ``label`` names the entry in run directories and reports
    (default: ``name``); every entry of a run needs its own.
    """

    name: Literal["symadit", "mcflow", "samples"]
    profile: str = Field(default="tiny", description="model config: configs/<name>/<profile>.yaml")
    checkpoint: Path | None = Field(default=None, description="load this instead of training")
    path: Path | None = Field(
        default=None, description="samples: the structure set (CIF folder, extxyz, parquet, CSV)"
    )
    label: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="name in run directories and reports"
    )
    limit: int | None = Field(default=None, gt=0, description="samples: read the first N entries")
    n_samples: int = Field(default=64, gt=0)
    steps: int | None = Field(default=None, gt=0, description="integration steps (model default)")
    seed: int = 0

    @property
    def key(self) -> str:
        """The entry's name in run directories, stage results and reports."""
        return self.label or self.name

    @property
    def generative(self) -> bool:
        """Whether the entry is a model that trains and samples (not a samples file)."""
        return self.name != "samples"

    @model_validator(mode="after")
    def _check_source(self) -> ModelRun:
        if self.generative:
            given = [k for k in ("path", "limit") if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: only a 'samples' entry reads a file")
        elif self.path is None:
            raise ValueError("a 'samples' entry needs path: the generated structures to screen")
        elif self.checkpoint is not None:
            raise ValueError("a 'samples' entry has no checkpoint (it reads path)")
        return self


class SelectionConfig(StrictModel):
    """Which V.U.N. candidates go to the MLIP screen and then to DFT."""

    strategy: Literal["ranked", "random", "diverse"] = Field(
        default="ranked",
        description=(
            "ranked: lowest MLIP E_hull first; random: the paper's unbiased draw; diverse: "
            "lowest E_hull first, at most max_per_system per chemical system"
        ),
    )
    max_per_system: int = Field(
        default=1, gt=0, description="diverse: picks per chemical system (e.g. Li-Mn-O)"
    )
    max_relax: int = Field(default=64, gt=0, description="V.U.N. candidates relaxed by the MLIP")
    n_dft: int = Field(default=4, ge=0, description="candidates sent to DFT per round")
    dft_max_atoms: int | None = Field(
        default=None,
        gt=0,
        description="send only crystals of at most this many atoms per cell to DFT (small "
        "picks keep local DFT to minutes)",
    )


class LoopConfig(StrictModel):
    """What the loop learns between rounds (off by default: every round samples one checkpoint).

    With ``finetune`` each model is fine-tuned after round k, from the checkpoint round k
    sampled, on its training set plus every crystal confirmed so far, and round k+1 samples
    the fine-tuned checkpoint (a round that confirmed nothing leaves the checkpoint as is).

    With ``mlip_finetune`` the MLIP (CHGNet) is fine-tuned after round k, from the base
    model, on every DFT result so far, and round k+1 relaxes its candidates and computes its
    whole hull with that version (:mod:`tasks.mlip.finetune`). Off by default, and circular
    with the local stand-in, whose "DFT" energies are the MLIP's own.
    """

    finetune: bool = Field(default=False, description="fine-tune the generators between rounds")
    steps: int | None = Field(default=200, gt=0, description="fine-tuning steps per round")
    max_time_s: float | None = Field(default=None, gt=0, description="fine-tuning time budget")
    lr: float | None = Field(default=None, gt=0, description="None: the model profile's")
    discovered_weight: int = Field(
        default=1, ge=1, description="copies of each confirmed crystal in the fine-tuning set"
    )
    evidence: Literal["dft", "mlip"] = Field(
        default="dft",
        description=(
            "dft: the crystals DFT (or the stand-in) confirmed (meta)stable; mlip: also those "
            "the MLIP hull places (meta)stable (more, and weaker, evidence)"
        ),
    )
    mlip_finetune: bool = Field(
        default=False, description="fine-tune the MLIP (CHGNet) on the DFT results between rounds"
    )
    mlip_epochs: int = Field(default=20, gt=0, description="MLIP fine-tuning epochs per round")
    mlip_lr: float = Field(default=1e-4, gt=0, description="MLIP fine-tuning learning rate")

    def budget(self) -> dict[str, Any]:
        """The fine-tuning budget as :class:`models.contract.FineTune` fields."""
        return {"steps": self.steps, "max_time_s": self.max_time_s, "lr": self.lr}


def _committee_shorthand(data: dict[str, Any]) -> dict[str, Any]:
    """``mlip: [chgnet, sevennet]`` (names or MLIP sections, the first relaxes) as ``mlip``
    plus ``committee.members``; a one-item list is that MLIP alone."""
    mlips = data.get("mlip")
    if not isinstance(mlips, list):
        return data
    if not mlips:
        raise ValueError("mlip: name at least one MLIP")
    sections = [{"name": m} if isinstance(m, str) else m for m in mlips]
    committee = dict(data.get("committee") or {})
    if committee.get("members"):
        raise ValueError("mlip: give the committee either as a list here or as committee.members")
    committee["members"] = [{"mlip": section} for section in sections[1:]]
    return {**data, "mlip": sections[0], "committee": committee}


class PipelineConfig(StrictModel):
    """The resolved configuration of one run (every stage's settings)."""

    profile: str = "quick"
    seed: int = 0
    run_root: Annotated[Path, Placement] = Path("runs")
    rounds: int = Field(default=1, ge=1)
    model_deployment: Annotated[str | None, Placement] = Field(
        default=None,
        pattern=r"^[^/]+/[^/]+$",
        description="deployment that trains and samples (e.g. model-work/gpu); None = here",
    )
    datasets: dict[str, DatasetSource] = Field(default_factory=dict)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    models: list[ModelRun] = Field(default_factory=list)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    mlip: MLIPConfig = Field(default_factory=MLIPConfig)
    committee: CommitteeConfig = Field(default_factory=CommitteeConfig)
    relax: RelaxConfig = Field(default_factory=RelaxConfig)
    hull: MLIPHullConfig = Field(default_factory=MLIPHullConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    dft: DftStageConfig = Field(default_factory=DftStageConfig)
    stability: StabilityRule = Field(default_factory=StabilityRule)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    dask: Annotated[DaskConfig, Placement] = Field(default_factory=DaskConfig)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return _committee_shorthand(migrate_renamed_keys(data))

    @property
    def screen(self) -> ScreenSettings:
        """The profile's MLIP screen: its MLIP (and committee), relaxation, hull and stability
        rule."""
        return ScreenSettings(
            mlip=self.mlip,
            relax=self.relax,
            hull=self.hull,
            stability=self.stability,
            committee=self.committee,
        )

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        keys = [m.key for m in self.models]
        if len(keys) != len(set(keys)):
            raise ValueError(
                f"models: each entry needs its own name or label, got {keys} "
                "(give repeated models a label)"
            )
        if self.models and "train" not in self.datasets:
            raise ValueError("datasets: a 'train' dataset is needed to train and judge novelty")
        return self


#: Keys a run's ``overrides`` may set (a deployment takes them from anyone who can start a
#: run): what to compute and how much, never a command, a path or a model file. A prefix
#: ending in ``.`` allows every key below it.
OVERRIDABLE = (
    "seed",
    "rounds",
    "model_deployment",
    "selection.",
    "stability.",
    "loop.finetune",
    "loop.steps",
    "loop.max_time_s",
    "loop.lr",
    "loop.discovered_weight",
    "loop.evidence",
    "loop.mlip_finetune",
    "loop.mlip_epochs",
    "loop.mlip_lr",
    "evaluate.seed",
    "evaluate.novelty_draw",
    "evaluate.dft_draw",
    "evaluate.workers",
    "relax.fmax",
    "relax.steps",
    "relax.chunk_size",
    "relax.n_workers",
    "relax.time_budget_s",
    "hull.energies",
    "hull.far_below",
    "dft.mode",
    "dft.hull.stable_below",
    "dft.hull.metastable_below",
    "dask.n_workers",
    "dask.tasks_per_worker",
)
#: Environment variable: more folders (``:``-separated) a run's profile may be read from,
#: besides the repository.
PROFILE_DIRS_ENV = "DISCOVERY_PROFILE_DIRS"


def check_overrides(overrides: dict[str, Any]) -> None:
    """Refuse override keys outside :data:`OVERRIDABLE`, naming them.

    Raises
    ------
    ValueError
        For every key a run may not override (commands, paths, model files, SLURM lines).
    """
    refused = sorted(
        key
        for key in overrides
        if not any(key == k or (k.endswith(".") and key.startswith(k)) for k in OVERRIDABLE)
    )
    if refused:
        raise ValueError(
            f"overrides of {', '.join(refused)} are not allowed: a run may override only "
            f"{', '.join(OVERRIDABLE)} (put anything else in a profile)"
        )


def check_profile_location(path: Path) -> None:
    """Refuse a profile file outside the repository and the folders of ``$DISCOVERY_PROFILE_DIRS``.

    Raises
    ------
    ValueError
        The profile lies elsewhere (a deployment's profile parameter must not read any file).
    """
    resolved = Path(path).resolve()
    extra = [Path(p).resolve() for p in os.environ.get(PROFILE_DIRS_ENV, "").split(":") if p]
    for root in (REPO_ROOT.resolve(), *extra):
        if resolved.is_relative_to(root):
            return
    raise ValueError(
        f"profile {path} lies outside the repository; add its folder to ${PROFILE_DIRS_ENV} "
        "to run it"
    )
