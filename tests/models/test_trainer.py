"""Trainer: exact resume, atomic checkpoints, EMA, validation and best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from models.nn.dit import DiT
from models.training import checkpoint as ckpt_module
from models.training.checkpoint import load_checkpoint, model_weights
from models.training.config import TrainerConfig
from models.training.ema import EMA
from models.training.trainer import Trainer

torch.set_num_threads(1)


class ToyDenoiser(nn.Module):
    """Predict clean token vectors from noisy ones with a tiny DiT (uses dropout + generator)."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 16)
        self.dit = DiT(hidden=16, depth=1, heads=2)
        self.drop = nn.Dropout(0.1)
        self.out = nn.Linear(16, 4)

    def loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        x = batch["x"]
        t = torch.rand(x.shape[0], generator=generator, device=x.device)
        noise = torch.randn(x.shape, generator=generator, device=x.device)
        xt = t[:, None, None] * x + (1 - t[:, None, None]) * noise
        h = self.drop(self.inp(xt))
        pred = self.out(self.dit(h, torch.zeros(x.shape[0], 16), batch["mask"]))
        err = ((pred - x) ** 2).sum(-1) * batch["mask"]
        mse = err.sum() / batch["mask"].sum()
        return mse, {"mse": mse.detach()}


def _data(n: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(int(rng.integers(2, 6)), 4)).astype(np.float32) for _ in range(n)]


def _collate(items: list[np.ndarray], rng: np.random.Generator) -> dict:
    n = max(len(i) for i in items)
    x = torch.zeros(len(items), n, 4)
    mask = torch.zeros(len(items), n, dtype=torch.bool)
    for b, item in enumerate(items):
        flip = rng.choice([-1.0, 1.0])  # augmentation through the collate rng
        x[b, : len(item)] = torch.from_numpy(item) * flip
        mask[b, : len(item)] = True
    return {"x": x, "mask": mask}


def _trainer(out: Path, max_steps: int, **kw) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainerConfig(
        lr=3e-3,
        batch_size=8,
        max_steps=max_steps,
        ema_decay=0.9,
        ckpt_every=kw.pop("ckpt_every", 100),
        val_every=kw.pop("val_every", 0),
        log_every=1,
        device="cpu",
        progress=False,
        **kw,
    )
    data = _data()
    return Trainer(ToyDenoiser(), cfg, out, data, _collate, val_data=data[:8], dataset_hash="toy")


def test_resume_is_exact(tmp_path: Path) -> None:
    straight = _trainer(tmp_path / "a", max_steps=10)
    straight.fit()
    first = _trainer(tmp_path / "b", max_steps=4, ckpt_every=4)
    first.fit()
    resumed = _trainer(tmp_path / "b", max_steps=10)
    result = resumed.fit(resume=True)
    assert result.step == 10
    a = load_checkpoint(tmp_path / "a" / "latest.pt")
    b = load_checkpoint(tmp_path / "b" / "latest.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["shadow"]:
        assert torch.equal(a["ema"]["shadow"][key], b["ema"]["shadow"][key]), key
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").open()]
    train_steps = [s for s in steps if s]
    assert sorted(set(train_steps)) == list(range(1, 11))


def test_crash_mid_write_keeps_previous_latest(tmp_path: Path, monkeypatch) -> None:
    trainer = _trainer(tmp_path, max_steps=2, ckpt_every=1)
    trainer.fit()
    before = load_checkpoint(tmp_path / "latest.pt")

    def exploding_save(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module.torch, "save", exploding_save)
    trainer.step += 1
    with pytest.raises(OSError):
        trainer.save()
    after = load_checkpoint(tmp_path / "latest.pt")
    assert after["step"] == before["step"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ema_update_rule() -> None:
    model = nn.Linear(3, 2)
    ema = EMA(model, decay=0.5, warmup=False)
    old = {k: v.clone() for k, v in ema.shadow.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)
    for name, p in model.named_parameters():
        torch.testing.assert_close(ema.shadow[name], 0.5 * old[name] + 0.5 * p)
    frozen = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    frozen[0].requires_grad_(False)
    assert set(EMA(frozen).shadow) == {"1.weight", "1.bias"}


def test_validation_loss_falls_and_best_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, max_steps=60, val_every=20)
    result = trainer.fit()
    vals = [json.loads(x) for x in (tmp_path / "metrics.jsonl").open()]
    vals = [v["val/loss"] for v in vals if v["split"] == "val"]
    assert len(vals) == 3
    assert vals[-1] < vals[0]
    assert result.best is not None
    best = load_checkpoint(result.best)
    assert best["best"] == pytest.approx(min(vals))
    weights = model_weights(best)
    assert set(weights) == set(best["model"])
