"""MCFlow configuration (one YAML profile per model size in ``configs/mcflow/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from models.training.config import TrainerConfig
from tasks.core.config import StrictModel, load_config


class NetworkConfig(StrictModel):
    """DiT size. Paper sizes: S 384/12/6, B 768/12/12, L 1024/24/16."""

    hidden: int = Field(default=384, gt=0)
    depth: int = Field(default=12, gt=0)
    heads: int = Field(default=6, gt=0)
    mlp_ratio: float = Field(default=4.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    coord_frequencies: int = Field(
        default=1,
        gt=0,
        description="coords enter as sin/cos(2πkF) for k = 1..K (K = 1: the paper's Lin(F))",
    )
    geometry: Literal["paper", "pairs"] = Field(
        default="pairs",
        description=(
            "'paper': coordinates enter only as token features (the paper's network); "
            "'pairs': every attention layer also reads sin/cos(2πk(F_j − F_i)) of every "
            "atom pair (not in the paper; DiffCSP and FlowMM feed coordinates this way). "
            "Under the random global translation the paper network stays at 'predict zero' "
            "for a whole CPU budget (benchmarks/results/mcflow_ablation.md)"
        ),
    )
    pair_frequencies: int | None = Field(
        default=None,
        gt=0,
        description="k = 1..K of the pair-offset sinusoids (None: coord_frequencies)",
    )
    pair_distances: int = Field(
        default=0,
        ge=0,
        description=(
            "0: none; R > 0: the pair features also hold R Gaussians of each pair's "
            "minimum-image distance in Å under the current (noisy) cell, centred on "
            "[0, 6] Å (not in the paper; DiffCSP's edges read the lattice for the same "
            "reason). Offsets in fractional coordinates alone do not say which atoms are near"
        ),
    )
    edge_hidden: int = Field(
        default=0,
        ge=0,
        description=(
            "0: the pair sinusoids feed each attention layer's bias and values directly; "
            "> 0: a per-layer edge MLP on [h_i, h_j, pair sinusoids] of this width does"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _relative_geometry(cls, data: Any) -> Any:
        """Profiles and checkpoints written before ``geometry`` said ``relative_geometry``."""
        if isinstance(data, dict) and "relative_geometry" in data:
            data = dict(data)
            data["geometry"] = "pairs" if data.pop("relative_geometry") else "paper"
        return data

    @model_validator(mode="after")
    def _distances_need_pairs(self) -> NetworkConfig:
        if self.pair_distances and self.geometry == "paper":
            raise ValueError("network.pair_distances needs network.geometry: pairs")
        return self

    @property
    def pair_dim(self) -> int:
        """Width of the pair features (0 for the paper network)."""
        if self.geometry == "paper":
            return 0
        return self.pair_sinusoid_dim + self.pair_distances

    @property
    def pair_sinusoid_dim(self) -> int:
        """Width of the pair-offset sinusoids alone."""
        return 6 * (self.pair_frequencies or self.coord_frequencies)


class FlowConfig(StrictModel):
    """Flow and loss settings."""

    w_types: float = Field(default=0.5, ge=0)
    w_coords: float = Field(default=2.0, ge=0)
    w_lengths: float = Field(default=1.0, ge=0)
    w_angles: float = Field(default=1.0, ge=0)
    translation_free: bool = Field(
        default=False,
        description="coordinate loss and sampling velocity without their mean over atoms",
    )
    time_clip: float = Field(
        default=0.9, gt=0, lt=1, description="t and s are clipped to this where they divide"
    )


class DataConfig(StrictModel):
    """Training data handling."""

    augment: bool = Field(default=True, description="hierarchical permutation + translation")
    val_fraction: float = Field(
        default=0.02, ge=0, lt=1, description="held-out share of the dataset for val/loss"
    )
    max_atoms: int = Field(default=64, gt=0, description="skip training crystals larger than this")


class SampleConfig(StrictModel):
    """Inference defaults (each can be overridden per call)."""

    steps: int = Field(default=100, gt=0)
    batch_size: int = Field(default=256, gt=0)
    guidance: Literal["auto", "on", "off"] = Field(
        default="auto", description="noisy guidance; auto = on for single-sample CSP/ATG"
    )
    omega: float = 2.0
    sigma: float = Field(default=0.1, ge=0, lt=1)
    coord_anneal_slope: float = Field(
        default=0.0,
        ge=0,
        description="FlowMM's inference anti-annealing (not in the MCFlow paper): the "
        "coordinate velocity is scaled by 1 + slope·s; 0 = the paper's sampler",
    )


class ValidationConfig(StrictModel):
    """DNG validity measured during training (picks ``best.pt``)."""

    n_samples: int = Field(default=64, ge=0, description="0 = only the validation loss")
    steps: int = Field(default=50, gt=0)
    seed: int = 1234


class MCFlowConfig(StrictModel):
    """Everything needed to train and sample MCFlow."""

    name: str = "mcflow"
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    #: ``best.pt`` is chosen by the validation loss: the structural validity of a few dozen
    #: validation samples peaks in the first hundreds of steps, on crystals with 8 distinct
    #: elements (the data: 3), and picked exactly those checkpoints.
    train: TrainerConfig = Field(
        default_factory=lambda: TrainerConfig(best_metric="val/loss", best_mode="min")
    )
    sample: SampleConfig = Field(default_factory=SampleConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)


def resolve_config(config: MCFlowConfig | str | Path) -> MCFlowConfig:
    """A config object, a YAML path, or a profile name (``tiny`` → configs/mcflow/tiny.yaml)."""
    if isinstance(config, MCFlowConfig):
        return config
    return load_config(config, MCFlowConfig, profiles="mcflow")
