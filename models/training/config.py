"""Settings of the one trainer every model shares (imports nothing heavy)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tasks.core.config import Placement, StrictModel


class TrainerConfig(StrictModel):
    """Optimization and bookkeeping settings shared by every model."""

    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = Field(default=0, ge=0, description="linear lr warm-up, then constant")
    batch_size: int = Field(default=256, gt=0)
    max_epochs: int | None = Field(default=100, gt=0)
    max_steps: int | None = Field(default=None, gt=0, description="wins over max_epochs if set")
    max_time_s: float | None = Field(
        default=None, gt=0, description="stop (with a checkpoint) after this wall time"
    )
    grad_clip: float | None = Field(default=10.0, gt=0, description="max grad norm; None = off")
    ema_decay: float = Field(default=0.9999, ge=0, lt=1)
    ema_warmup: bool = True
    val_every: int = Field(default=1000, ge=0, description="steps between validations; 0 = end")
    ckpt_every: Annotated[int, Placement] = Field(
        default=1000, gt=0, description="steps between latest.pt writes"
    )
    log_every: Annotated[int, Placement] = Field(default=50, gt=0)
    best_metric: str = Field(default="val/loss", description="validation key that picks best.pt")
    best_mode: Literal["min", "max"] = "min"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="auto = bf16 autocast on CUDA, fp32 on CPU"
    )
    progress: Annotated[bool, Placement] = True

    @model_validator(mode="after")
    def _check_budget(self) -> TrainerConfig:
        if self.max_epochs is None and self.max_steps is None:
            raise ValueError("set max_epochs or max_steps")
        return self
