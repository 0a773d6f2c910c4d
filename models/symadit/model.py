"""The SymADiT configuration and the bundled model (autoencoder + latent flow + statistics)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.symadit.autoencoder import WyckoffAutoencoder
from models.symadit.config import SymADiTConfig
from models.symadit.data import TokenStats
from models.symadit.flow import LatentFlow
from models.training.checkpoint import load_checkpoint, save_checkpoint


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
