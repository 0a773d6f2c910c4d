"""SymADiT configuration: data, both networks, both trainers, validation and sampling.

One YAML profile per size in ``configs/symadit/`` (``tiny``, ``cpu-small``, ``paper``). This
module imports nothing heavy, so a profile can be checked before any model work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from models.training.config import TrainerConfig
from tasks.core.config import Placement, StrictModel, load_config


class AutoencoderConfig(StrictModel):
    """Architecture, loss weights and augmentation of the autoencoder."""

    hidden: int = Field(default=128, gt=0, description="token width")
    encoder_layers: int = Field(default=2, ge=1)
    decoder_layers: int = Field(default=2, ge=1)
    heads: int = Field(default=4, ge=1)
    mlp_ratio: float = Field(default=4.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    latent_dim: int = Field(default=8, gt=0, description="d_z per orbit")
    latent_bound: float = Field(default=3.0, gt=0, description="B in z = B·tanh(z/B)")
    latent_noise: float = Field(default=0.05, ge=0, description="std of training-time latent noise")
    w_element: float = Field(default=1.0, ge=0)
    w_wyckoff: float = Field(default=1.0, ge=0)
    w_coord: float = Field(default=10.0, ge=0)
    w_cell: float = Field(default=1.0, ge=0)
    aug_coord_std: float = Field(
        default=0.005, ge=0, description="jitter of free fractional coords (augmentation)"
    )
    aug_cell_std: float = Field(
        default=0.02, ge=0, description="jitter of free normalized cell params (augmentation)"
    )


class FlowConfig(StrictModel):
    """Architecture and training settings of the latent DiT."""

    hidden: int = Field(default=128, gt=0)
    depth: int = Field(default=4, ge=1)
    heads: int = Field(default=4, ge=1)
    mlp_ratio: float = Field(default=4.0, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    self_cond_prob: float = Field(default=0.5, ge=0, le=1)
    p_uncond: float = Field(default=0.1, ge=0, le=1, description="CFG label-dropout probability")
    time_sampling: Literal["uniform", "logit_normal"] = Field(
        default="uniform", description="distribution of training times t"
    )
    loss_weighting: Literal["x1", "velocity"] = Field(
        default="x1",
        description=(
            "'x1': the paper's MSE(ẑ_1, z_1); 'velocity': the error divided by "
            "1 − min(t, time_clip) before squaring, i.e. the MSE of the implied velocity "
            "(ADiT's code base): late t, where decoded positions are decided, weighs more"
        ),
    )
    time_clip: float = Field(
        default=0.9, gt=0, lt=1, description="t is clipped to this where the weighting divides"
    )


class SamplingConfig(StrictModel):
    """Default sampling settings (the CLI / API arguments override steps and guidance)."""

    steps: int = Field(default=100, ge=1, description="Euler steps of the latent ODE")
    guidance: float = Field(default=1.5, ge=0, description="CFG scale w (1 = no guidance)")
    batch_size: Annotated[int, Placement] = Field(default=256, gt=0)
    wyckoff_temperature: float = Field(
        default=0.0, ge=0, description="0 = argmax Wyckoff decoding, > 0 = sample"
    )
    element_temperature: float = Field(
        default=0.0, ge=0, description="0 = argmax element decoding, > 0 = sample"
    )
    overlap_tol: float = Field(
        default=0.1, ge=0, description="Å; atoms closer than this make a sample 'failed'"
    )
    cell: Literal["primitive", "conventional"] = Field(
        default="primitive",
        description="primitive Niggli cell (as datasets store) or pyxtal's conventional cell",
    )


class SymADiTDataConfig(StrictModel):
    """How the training set is read and split."""

    val_fraction: float = Field(
        default=0.05, ge=0, lt=1, description="held-out share for validation"
    )
    max_val: int = Field(default=1000, ge=0, description="cap on validation crystals")
    limit: int | None = Field(default=None, gt=0, description="use only the first N crystals")
    n_workers: Annotated[int, Placement] = Field(
        default=1, ge=1, description="processes for tokenizing a CSV"
    )
    cache_dir: Annotated[Path | None, Placement] = Field(
        default=None, description="token cache for CSV inputs (default data/cache)"
    )


class SymADiTValidationConfig(StrictModel):
    """Extra validation of the autoencoder (decode + expand)."""

    n_expand: int = Field(
        default=64, ge=0, description="validation crystals decoded and expanded to check distances"
    )
    min_distance: float = Field(default=0.5, gt=0, description="Å; closer pairs count as a clash")


class SymADiTConfig(StrictModel):
    """Everything SymADiT needs: data, both networks, both trainers, sampling defaults."""

    model: Literal["symadit"] = "symadit"
    seed: int = 0
    data: SymADiTDataConfig = Field(default_factory=SymADiTDataConfig)
    autoencoder: AutoencoderConfig = Field(default_factory=AutoencoderConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    ae_trainer: TrainerConfig = Field(default_factory=lambda: TrainerConfig(best_metric="val/loss"))
    flow_trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    ae_checkpoint: Literal["latest", "best"] = Field(
        default="latest",
        description="autoencoder weights the flow stage freezes: final EMA (latest, "
        "deterministic under resume) or the best validation loss (best)",
    )
    validation: SymADiTValidationConfig = Field(default_factory=SymADiTValidationConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)


def load_symadit_config(config: SymADiTConfig | dict[str, Any] | str | Path) -> SymADiTConfig:
    """A :class:`SymADiTConfig` from a model, a dict, a YAML path or a profile name.

    Profile names are looked up in ``configs/symadit/`` (``tiny``, ``cpu-small``, ``paper``).
    """
    if isinstance(config, SymADiTConfig):
        return config
    if isinstance(config, dict):
        return SymADiTConfig.model_validate(config)
    return load_config(config, SymADiTConfig, profiles="symadit")
