"""The project's one training loop (MCFlow, and both SymADiT stages).

A model plugs in by implementing :class:`TrainableModel` (``loss(batch, generator)``);
the data is any indexable sequence of items plus a ``collate(items, rng)`` function that
builds a batch (and may apply random augmentation with the numpy ``rng`` it is given).

Determinism and exact resume
----------------------------
All randomness of a step is derived from ``(seed, step)``: the epoch's data order is a
permutation drawn from ``(seed, epoch)``, the collate rng from ``(seed, step)`` and the
``torch.Generator`` passed to ``loss`` from ``(seed, step)``. The global RNG states
(python, numpy, torch, cuda; used e.g. by dropout) are stored in every checkpoint and
restored on resume. So training N steps straight and training k steps, stopping and
resuming to N give the same weights (bitwise on CPU).

Two-stage models (SymADiT) run one :class:`Trainer` per stage with its own ``out_dir``;
parameters with ``requires_grad=False`` (a frozen autoencoder) are neither optimized nor
tracked by the EMA.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from models.training.checkpoint import (
    BEST,
    LATEST,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from models.training.config import TrainerConfig
from models.training.ema import EMA
from tasks.core.atomic import write_text_atomic

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"


@runtime_checkable
class TrainableModel(Protocol):
    """What the trainer needs from a model (besides being an ``nn.Module``)."""

    def loss(
        self, batch: Any, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor | float]]:
        """Scalar training loss and named metrics for one batch.

        All sampling inside (times, noise) must use ``generator``.
        """
        ...


ValidateFn = Callable[[nn.Module, int], dict[str, float]]
CollateFn = Callable[[list[Any], np.random.Generator], Any]


@dataclass(frozen=True)
class TrainResult:
    """Where training left its outputs."""

    out_dir: Path
    latest: Path
    best: Path | None
    step: int
    best_value: float | None


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(name)


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Recursively move tensors in dicts, lists, tuples and dataclasses to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to_device(v, device) for v in batch)
    if is_dataclass(batch) and not isinstance(batch, type):
        return replace(
            batch, **{f.name: move_to_device(getattr(batch, f.name), device) for f in fields(batch)}
        )
    return batch


def _seed_of(*parts: int) -> int:
    """Mix integers into one 63-bit seed (stable across runs and platforms)."""
    return (
        int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint32).view(np.uint64)[0])
        >> 1
    )


class Trainer:
    """Train a :class:`TrainableModel` with AdamW, clipping, EMA and atomic checkpoints.

    Parameters
    ----------
    model
        An ``nn.Module`` with ``loss(batch, generator)``.
    config
        Optimization settings.
    out_dir
        Receives ``latest.pt``, ``best.pt`` and ``metrics.jsonl``.
    train_data
        Indexable items (``len`` and ``__getitem__``).
    collate
        ``collate(items, rng) -> batch``; tensors in the batch are moved to the device.
    val_data
        Optional items for a validation loss (``val/loss`` and ``val/<metric>``), computed
        with EMA weights and a fixed seed.
    validate
        Optional callback ``validate(ema_model, step) -> metrics`` (e.g. sample and measure
        validity); keys are logged with a ``val/`` prefix unless they have one.
    run_config
        JSON-able dict stored in every checkpoint under ``config`` (what is needed to
        rebuild the model), next to the trainer config.
    dataset_hash
        Identifies the training data; resuming on different data is an error.
    extra
        JSON-able dict stored in every checkpoint (e.g. fitted priors).
    """

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig,
        out_dir: str | Path,
        train_data: Sequence[Any],
        collate: CollateFn,
        val_data: Sequence[Any] | None = None,
        validate: ValidateFn | None = None,
        run_config: dict[str, Any] | None = None,
        dataset_hash: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, TrainableModel):
            raise TypeError(f"{type(model).__name__} does not implement loss(batch, generator)")
        if len(train_data) == 0:
            raise ValueError("empty training set")
        self.config = config
        self.out_dir = Path(out_dir)
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.train_data = train_data
        self.collate = collate
        self.val_data = val_data
        self.validate_fn = validate
        self.run_config = run_config or {}
        self.dataset_hash = dataset_hash
        self.extra = extra or {}
        self.use_bf16 = self.device.type == "cuda" and config.precision in ("auto", "bf16")
        if config.precision == "bf16" and self.device.type != "cuda":
            log.warning("bf16 requested on %s: training in fp32", self.device)
        params = [p for p in model.parameters() if p.requires_grad]
        # foreach: one kernel per operation over all tensors (PyTorch picks it only on GPUs;
        # on CPU the per-tensor loop cost MCFlow tiny 4 ms of its 40 ms step)
        self.optimizer = torch.optim.AdamW(
            params,
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            foreach=True,
        )
        warm = config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0
        )
        self.ema = EMA(model, config.ema_decay, config.ema_warmup)
        self.step = 0
        self.best_value: float | None = None
        self.steps_per_epoch = max(1, len(train_data) // config.batch_size)

    # ------------------------------------------------------------------ schedule
    @property
    def total_steps(self) -> int:
        """Steps to train: ``max_steps`` if set, else ``max_epochs × steps_per_epoch``."""
        if self.config.max_steps is not None:
            return self.config.max_steps
        assert self.config.max_epochs is not None
        return self.config.max_epochs * self.steps_per_epoch

    def batch_indices(self, step: int) -> np.ndarray:
        """Dataset indices of the batch at global ``step`` (deterministic)."""
        epoch, b = divmod(step, self.steps_per_epoch)
        perm = np.random.default_rng(_seed_of(self.config.seed, 1, epoch)).permutation(
            len(self.train_data)
        )
        bs = min(self.config.batch_size, len(self.train_data))
        return perm[b * bs : (b + 1) * bs]

    def _autocast(self) -> Any:
        if self.use_bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _generator(self, *parts: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(_seed_of(self.config.seed, *parts))

    # ------------------------------------------------------------------ checkpoints
    def _payload(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "rng": capture_rng_state(),
            "config": {"trainer": self.config.model_dump(mode="json"), **self.run_config},
            "dataset_hash": self.dataset_hash,
            "best": self.best_value,
            "extra": self.extra,
        }

    def save(self, name: str = LATEST) -> Path:
        """Atomically write the full training state to ``out_dir/name``."""
        return save_checkpoint(self.out_dir / name, self._payload())

    def _resume(self) -> None:
        path = self.out_dir / LATEST
        if not path.exists():
            log.info("no checkpoint at %s: starting from scratch", path)
            self._truncate_metrics(0)  # lines of a run killed before its first checkpoint
            return
        ckpt = load_checkpoint(path, map_location=self.device)
        if ckpt["dataset_hash"] != self.dataset_hash:
            raise ValueError(
                f"{path} was trained on dataset {ckpt['dataset_hash']!r}, "
                f"not {self.dataset_hash!r}; refusing to resume"
            )
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.ema.load_state_dict(ckpt["ema"])
        self.step = int(ckpt["step"])
        self.best_value = ckpt["best"]
        restore_rng_state(ckpt["rng"])
        self._truncate_metrics(self.step)
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ metrics
    def _truncate_metrics(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from."""
        path = self.out_dir / METRICS_FILE
        if not path.exists():
            return
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        write_text_atomic(path, "".join(f"{ln}\n" for ln in keep))

    def _log(self, record: dict[str, Any]) -> None:
        with (self.out_dir / METRICS_FILE).open("a") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def run_validation(self) -> dict[str, float]:
        """Validation loss and callback metrics with EMA weights (model left unchanged)."""
        metrics: dict[str, float] = {}
        was_training = self.model.training
        self.model.eval()
        with self.ema.swapped_in(self.model):
            if self.val_data is not None and len(self.val_data) > 0:
                sums: dict[str, float] = defaultdict(float)
                n_total = 0
                bs = self.config.batch_size
                for i, start in enumerate(range(0, len(self.val_data), bs)):
                    items = [
                        self.val_data[j] for j in range(start, min(start + bs, len(self.val_data)))
                    ]
                    batch = move_to_device(
                        self.collate(
                            items, np.random.default_rng(_seed_of(self.config.seed, 2, i))
                        ),
                        self.device,
                    )
                    with self._autocast():
                        loss, parts = self.model.loss(batch, self._generator(3, i))
                    sums["loss"] += float(loss) * len(items)
                    for k, v in parts.items():
                        sums[k] += float(v) * len(items)
                    n_total += len(items)
                metrics.update({f"val/{k}": v / n_total for k, v in sums.items()})
            if self.validate_fn is not None:
                for k, v in self.validate_fn(self.model, self.step).items():
                    metrics[k if k.startswith("val/") else f"val/{k}"] = float(v)
        self.model.train(was_training)
        return metrics

    def _after_validation(self, metrics: dict[str, float]) -> None:
        self._log({"step": self.step, "split": "val", **metrics})
        value = metrics.get(self.config.best_metric)
        if value is None or not math.isfinite(value):
            return
        better = self.best_value is None or (
            value < self.best_value if self.config.best_mode == "min" else value > self.best_value
        )
        if better:
            self.best_value = value
            self.save(BEST)
            log.info("step %d: new best %s = %.5g", self.step, self.config.best_metric, value)

    # ------------------------------------------------------------------ loop
    def train_step(self) -> tuple[float, dict[str, float], float, int]:
        """One optimization step; returns loss, metrics, grad norm and batch size."""
        idx = self.batch_indices(self.step)
        items = [self.train_data[int(i)] for i in idx]
        rng = np.random.default_rng(_seed_of(self.config.seed, 4, self.step))
        batch = move_to_device(self.collate(items, rng), self.device)
        with self._autocast():
            loss, parts = self.model.loss(batch, self._generator(5, self.step))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.config.grad_clip is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip))
        else:
            grad_norm = float(
                torch.linalg.vector_norm(
                    torch.stack([p.grad.norm() for p in params if p.grad is not None])
                )
            )
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.step += 1
        return float(loss.detach()), {k: float(v) for k, v in parts.items()}, grad_norm, len(items)

    def fit(self, resume: bool = False) -> TrainResult:
        """Train until ``total_steps`` (or ``max_time_s``); checkpoint and validate on the way.

        Parameters
        ----------
        resume
            Continue from ``out_dir/latest.pt`` if it exists (same step, optimizer, EMA,
            RNG states and data order).
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        elif (self.out_dir / METRICS_FILE).exists():
            (self.out_dir / METRICS_FILE).unlink()
        cfg = self.config
        total = self.total_steps
        self.model.train()
        t_start = time.perf_counter()
        window: dict[str, float] = defaultdict(float)
        n_window, items_window, t_window = 0, 0, time.perf_counter()
        bar = tqdm(total=total, initial=self.step, disable=not cfg.progress, desc="train")
        validated_at = -1
        while self.step < total:
            loss, parts, grad_norm, n_items = self.train_step()
            window["loss"] += loss
            window["grad_norm"] += grad_norm
            for k, v in parts.items():
                window[k] += v
            n_window += 1
            items_window += n_items
            bar.update(1)
            out_of_time = (
                cfg.max_time_s is not None and time.perf_counter() - t_start > cfg.max_time_s
            )
            if self.step % cfg.log_every == 0 or self.step == total or out_of_time:
                dt = time.perf_counter() - t_window
                rec: dict[str, Any] = {k: v / n_window for k, v in window.items()}
                rec.update(
                    step=self.step,
                    epoch=self.step // self.steps_per_epoch,
                    split="train",
                    lr=self.scheduler.get_last_lr()[0],
                    items_per_s=items_window / max(dt, 1e-9),
                    elapsed_s=time.perf_counter() - t_start,
                )
                self._log(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", it_s=f"{rec['items_per_s']:.0f}")
                window.clear()
                n_window, items_window, t_window = 0, 0, time.perf_counter()
            if not math.isfinite(loss):
                raise FloatingPointError(f"non-finite loss {loss} at step {self.step}")
            if cfg.val_every and self.step % cfg.val_every == 0:
                self._after_validation(self.run_validation())
                validated_at = self.step
            if self.step % cfg.ckpt_every == 0:
                self.save(LATEST)
            if out_of_time:
                log.info("stopping at step %d: max_time_s=%s reached", self.step, cfg.max_time_s)
                break
        bar.close()
        if validated_at != self.step and (
            self.val_data is not None or self.validate_fn is not None
        ):
            self._after_validation(self.run_validation())
        latest = self.save(LATEST)
        best = self.out_dir / BEST
        return TrainResult(
            out_dir=self.out_dir,
            latest=latest,
            best=best if best.exists() else None,
            step=self.step,
            best_value=self.best_value,
        )
