"""The contract of a generative model: typed train and sample requests, and the protocol.

Models implement :class:`GenerativeModel` in their ``api`` module; :mod:`models.registry`
finds them by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import Field

from models.training.config import TrainerConfig
from tasks.core.config import StrictModel

if TYPE_CHECKING:
    from models.sample_output import SampleRecord

TaskName = Literal["dng", "csp", "atg"]


class FineTune(StrictModel):
    """Continue training a checkpoint on a new dataset: its weights, a fresh optimizer, a budget.

    The network, its data priors (MCFlow) or its autoencoder and statistics (SymADiT) stay
    those of ``init_from``; the profile's training settings apply except for these.
    """

    init_from: Path
    steps: int | None = Field(default=200, gt=0, description="optimizer steps (None: time only)")
    max_time_s: float | None = Field(default=None, gt=0)
    lr: float | None = Field(default=None, gt=0, description="None: the profile's")

    def apply(self, trainer: TrainerConfig) -> TrainerConfig:
        """The profile's trainer settings with this budget (no warm-up: the weights are warm)."""
        update: dict[str, object] = {
            "max_steps": self.steps,
            "max_epochs": None if self.steps else trainer.max_epochs,
            "max_time_s": self.max_time_s,
            "warmup_steps": 0,
        }
        if self.lr is not None:
            update["lr"] = self.lr
        return trainer.model_copy(update=update)


class TrainedOn(StrictModel):
    """What a checkpoint was trained on; every model's trainer stores it in the checkpoint's
    ``extra`` (:meth:`as_extra`) and the pipeline reads it back with :meth:`from_extra`."""

    n_train: int = Field(ge=0, description="training crystals (the validation split excluded)")
    init_from: str | None = Field(default=None, description="the fine-tuned checkpoint")

    def as_extra(self) -> dict[str, Any]:
        """The fields as they go into a checkpoint's ``extra``."""
        return self.model_dump()

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> TrainedOn | None:
        """The record in a checkpoint's ``extra``; ``None`` for one written without it."""
        if extra.get("n_train") is None:
            return None
        return cls.model_validate({name: extra.get(name) for name in cls.model_fields})


class TrainRequest(StrictModel):
    """What to train: a profile (``configs/<model>/<profile>.yaml`` or a YAML path) on a dataset.

    With ``finetune`` the model starts from that checkpoint instead of from scratch.
    """

    profile: str
    dataset: Path
    out_dir: Path
    resume: bool = False
    finetune: FineTune | None = None


class SampleRequest(StrictModel):
    """What to sample. Options a model does not support are refused by that model.

    Attributes
    ----------
    checkpoint
        Checkpoint file or training directory.
    task
        ``dng`` (de novo, needs ``n``), ``csp`` (``compositions`` or ``structures``) or
        ``atg`` (``structures``).
    n
        Number of de novo samples.
    compositions
        CSP formulas, taken literally as the cell content.
    structures
        A structure set (CSP: its compositions; ATG: its structures).
    k
        Samples per composition / structure.
    mask_sites
        ATG substitution: per structure, the site indices to regenerate.
    steps
        Integration steps (model default when ``None``).
    guidance
        Guidance weight ``w``, one meaning for every model: each step's prediction is
        ``weak + w · (conditioned − weak)``, so ``1`` is no guidance and larger values push
        harder. SymADiT: classifier-free guidance on the space group (weak = the
        unconditioned prediction). MCFlow: noisy guidance for CSP / ATG (weak = the
        prediction from noised inputs; de novo has none). ``None``: the model's default.
    spacegroups
        SymADiT: space groups to sample (cycled over the samples).
    seed
        Sampling seed (part of every sample id).
    batch_size
        Samples per forward pass (model default when ``None``).
    device
        ``auto``, ``cpu`` or ``cuda``.
    out_dir
        Where ``samples.parquet``, ``samples.extxyz`` and ``cifs/`` are written.
    """

    checkpoint: Path
    task: TaskName = "dng"
    n: int | None = Field(default=None, gt=0)
    compositions: list[str] | None = None
    structures: Path | None = None
    k: int = Field(default=1, gt=0)
    mask_sites: list[list[int]] | None = None
    steps: int | None = Field(default=None, gt=0)
    guidance: float | None = Field(default=None, ge=0)
    spacegroups: list[int] | None = None
    seed: int = 0
    batch_size: int | None = Field(default=None, gt=0)
    device: str = "auto"
    out_dir: Path | None = None


class GenerativeModel(Protocol):
    """A generative model of crystals."""

    @property
    def name(self) -> str:
        """Registry name (``symadit``, ``mcflow``)."""
        ...

    @property
    def tasks(self) -> frozenset[str]:
        """Sampling tasks it supports."""
        ...

    def train(self, request: TrainRequest) -> Path:
        """Train (resuming when asked); return the checkpoint to sample from."""
        ...

    def sample(self, request: SampleRequest) -> list[SampleRecord]:
        """Generate crystals; one record per requested sample, failed ones included."""
        ...


def refuse_options(model: str, request: SampleRequest, unsupported: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the options of ``request`` that ``model`` does not take."""
    defaults = SampleRequest.model_fields
    given = [o for o in unsupported if getattr(request, o) != defaults[o].default]
    if given:
        raise ValueError(f"{model} sampling does not take {', '.join(given)}")
