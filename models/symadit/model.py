"""The SymADiT configuration and the bundled model (autoencoder + latent flow + statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from models.symadit.autoencoder import AutoencoderConfig, WyckoffAutoencoder
from models.symadit.data import TokenStats
from models.symadit.flow import FlowConfig, LatentFlow
from models.symadit.sampling import SamplingConfig
from models.training import TrainerConfig
from models.training.checkpoint import load_checkpoint, save_checkpoint
from tasks.config import StrictModel


class SymADiTDataConfig(StrictModel):
    """How the training set is read and split."""

    val_fraction: float = Field(
        default=0.05, ge=0, lt=1, description="held-out share for validation"
    )
    max_val: int = Field(default=1000, ge=0, description="cap on validation crystals")
    limit: int | None = Field(default=None, gt=0, description="use only the first N crystals")
    n_workers: int = Field(default=1, ge=1, description="processes for tokenizing a CSV")
    cache_dir: Path | None = Field(
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


class SymADiT(nn.Module):
    """Autoencoder + latent flow + training statistics, as used for sampling.

    Parameters
    ----------
    config
        The full SymADiT config.
    stats
        Training-set statistics (p(g), p(K|g), elements, cell normalization).
    """

    def __init__(self, config: SymADiTConfig, stats: TokenStats) -> None:
        super().__init__()
        self.config = config
        self.stats = stats
        self.autoencoder = WyckoffAutoencoder(config.autoencoder, stats)
        self.flow = LatentFlow(config.flow, config.autoencoder.latent_dim)

    def generate(self, n: int, seed: int = 0, **kwargs: Any):
        """Shortcut for :func:`models.symadit.sampling.generate`."""
        from models.symadit.sampling import generate

        return generate(self, n, seed=seed, **kwargs)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write a sampling checkpoint (project checkpoint format, EMA weights as ``model``)."""
        return save_checkpoint(
            path,
            {
                "model": {k: v.detach().cpu() for k, v in self.state_dict().items()},
                "ema": None,
                "optimizer": None,
                "scheduler": None,
                "step": int((extra or {}).get("flow_step", 0)),
                "epoch": 0,
                "rng": None,
                "config": {"symadit": self.config.model_dump(mode="json")},
                "dataset_hash": str((extra or {}).get("dataset_hash", "")),
                "best": None,
                "extra": {"stats": self.stats.to_dict(), **(extra or {})},
            },
        )

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> SymADiT:
        """Load a checkpoint written by :meth:`save` (or the directory holding ``symadit.pt``)."""
        path = Path(path)
        if path.is_dir():
            path = path / "symadit.pt"
        ckpt = load_checkpoint(path, map_location=map_location)
        config_dict = ckpt.get("config", {})
        if "symadit" not in config_dict:
            raise ValueError(f"{path} is not a SymADiT checkpoint")
        if "stage" in config_dict:
            raise ValueError(
                f"{path} is a training-stage checkpoint ({config_dict['stage']}); sample from "
                "the symadit.pt that train() writes (or its directory)"
            )
        config = SymADiTConfig.model_validate(ckpt["config"]["symadit"])
        stats = TokenStats.from_dict(ckpt["extra"]["stats"])
        model = cls(config, stats)
        model.load_state_dict(ckpt["model"])
        model.eval()
        return model
