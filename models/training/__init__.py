"""Shared training machinery: the trainer, EMA and the checkpoint format."""

from models.training.checkpoint import load_checkpoint, model_weights, save_checkpoint
from models.training.ema import EMA
from models.training.trainer import (
    TrainableModel,
    Trainer,
    TrainerConfig,
    TrainResult,
    move_to_device,
    resolve_device,
)

__all__ = [
    "EMA",
    "TrainResult",
    "TrainableModel",
    "Trainer",
    "TrainerConfig",
    "load_checkpoint",
    "model_weights",
    "move_to_device",
    "resolve_device",
    "save_checkpoint",
]
