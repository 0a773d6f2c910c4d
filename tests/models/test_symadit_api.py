"""SymADiT end to end: two-stage training, overfit, exact resume, sampling output, configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from support.symadit import sample_tokens, small_config, write_token_dataset

from models.contract import FineTune, SampleRequest, TrainedOn
from models.registry import get_model
from models.symadit.api import finetune, sample, train
from models.symadit.config import load_symadit_config
from models.symadit.model import SymADiT
from models.symadit.symmetry import symmetry_is_exact
from models.symadit.validation import flow_validator, reconstruction_metrics
from models.training.checkpoint import load_checkpoint
from tasks.core.config import ConfigError


def _metrics(path: Path, split: str = "train") -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for r in lines if r["split"] == split]


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory) -> tuple[Path, Path]:
    """Both stages trained on the same 32 crystals (no held-out set)."""
    root = tmp_path_factory.mktemp("symadit_overfit")
    data = write_token_dataset(sample_tokens(32), root / "dataset.parquet")
    cfg = small_config(
        ae_steps=150,
        flow_steps=150,
        **{
            "data": {"val_fraction": 0.0},
            "autoencoder": {"hidden": 64, "encoder_layers": 2, "decoder_layers": 2, "heads": 4},
            "flow": {"hidden": 64, "depth": 2, "heads": 4},
            "ae_trainer.batch_size": 32,
            "ae_trainer.lr": 3e-3,
            "flow_trainer.batch_size": 32,
            "flow_trainer.ckpt_every": 50,
            "flow_trainer.log_every": 10,
            "ae_trainer.ckpt_every": 50,
            "ae_trainer.log_every": 10,
        },
    )
    checkpoint = train(cfg, data, root / "run")
    return root, checkpoint


def test_overfit_autoencoder_and_flow_loss_falls(overfit_run) -> None:
    root, checkpoint = overfit_run
    model = SymADiT.load(checkpoint)
    metrics = reconstruction_metrics(model.autoencoder, list(sample_tokens(32)), n_expand=32)
    assert metrics["recon_element_acc"] >= 0.95, metrics
    assert metrics["recon_wyckoff_acc"] >= 0.95, metrics
    flow_log = _metrics(root / "run" / "flow" / "metrics.jsonl")
    first = np.mean([r["loss"] for r in flow_log[:3]])
    last = np.mean([r["loss"] for r in flow_log[-3:]])
    assert last < 0.85 * first, (first, last)
    # the flow stage froze the autoencoder: its weights are the AE stage's EMA weights
    ae_ckpt = load_checkpoint(root / "run" / "autoencoder" / "latest.pt")
    for name, value in ae_ckpt["ema"]["shadow"].items():
        assert torch.equal(model.autoencoder.state_dict()[name], value), name
    with pytest.raises(ValueError, match="training-stage"):
        SymADiT.load(root / "run" / "autoencoder" / "latest.pt")
    assert SymADiT.load(root / "run").stats == model.stats  # the directory works too
    summary = json.loads((root / "run" / "training_summary.json").read_text())
    assert summary["autoencoder_step"] == 150 and summary["flow_step"] == 150


def test_sample_writes_outputs_with_exact_symmetry(overfit_run, tmp_path) -> None:
    """Issue 4: 100% of generated crystals have the requested group or a supergroup."""
    _, checkpoint = overfit_run
    request = SampleRequest(
        checkpoint=checkpoint, n=48, seed=1, steps=20, guidance=1.5, out_dir=tmp_path / "samples"
    )
    records = sample(request)
    assert len(records) == 48
    frame = pd.read_parquet(tmp_path / "samples" / "samples.parquet")
    assert len(frame) == 48 and set(frame["status"]) <= {"ok", "failed"}
    assert (frame.loc[frame["status"] == "failed", "reason"] != "").all()
    ok = [r for r in records if r.status == "ok"]
    assert len(ok) >= 24
    assert len(list((tmp_path / "samples" / "cifs").glob("*.cif"))) == len(ok)
    assert (tmp_path / "samples" / "samples.extxyz").exists()
    for r in ok:
        exact, detected = symmetry_is_exact(r.to_structure(), r.spacegroup_requested, symprec=0.01)
        assert exact, (r.id, r.spacegroup_requested, detected, r.extra["wyckoff_labels"])
        extra = r.extra
        assert extra["n_orbits"] == len(extra["wyckoff_labels"]) == len(extra["elements"])
    again = get_model("symadit").sample(request.model_copy(update={"out_dir": None}))
    assert [r.structure for r in again] == [r.structure for r in records]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def test_resume_is_exact(tmp_path) -> None:
    """Interrupting either stage and resuming gives the same weights as one straight run."""
    data = write_token_dataset(sample_tokens(48), tmp_path / "dataset.parquet")
    straight = _weights(train(small_config(6, 6), data, tmp_path / "straight"))

    # stage 1 interrupted at step 3 (the flow then restarts on the final autoencoder)
    train(small_config(3, 2), data, tmp_path / "ae_cut")
    resumed_ae = _weights(train(small_config(6, 6), data, tmp_path / "ae_cut", resume=True))
    assert (tmp_path / "ae_cut" / "flow" / "latest.stale.pt").exists()

    # stage 2 interrupted at step 3 (the finished autoencoder stage is skipped)
    train(small_config(6, 3), data, tmp_path / "flow_cut")
    resumed_flow = _weights(train(small_config(6, 6), data, tmp_path / "flow_cut", resume=True))

    for other in (resumed_ae, resumed_flow):
        assert straight.keys() == other.keys()
        for name in straight:
            assert torch.equal(straight[name], other[name]), name
    lines = _metrics(tmp_path / "flow_cut" / "flow" / "metrics.jsonl")
    assert [r["step"] for r in lines] == list(range(1, 7))


def test_profiles_load_and_paper_sizes() -> None:
    from models.symadit.data import TokenStats

    stats = TokenStats.from_tokens(sample_tokens(8))
    sizes = {}
    for name in ("tiny", "cpu-small", "paper"):
        cfg = load_symadit_config(name)
        with torch.device("meta"):
            model = SymADiT(cfg, stats)
        sizes[name] = (
            sum(p.numel() for p in model.autoencoder.parameters()),
            sum(p.numel() for p in model.flow.parameters()),
        )
    ae, dit = sizes["paper"]
    assert 48e6 < ae < 56e6 and 125e6 < dit < 135e6, sizes
    paper = load_symadit_config("paper")
    assert paper.ae_trainer.batch_size == paper.flow_trainer.batch_size == 512
    assert paper.autoencoder.encoder_layers == 8 and paper.autoencoder.heads == 8
    assert paper.flow.depth == 12 and paper.flow.heads == 12
    with pytest.raises(ConfigError):
        load_symadit_config("no-such-profile")
    with pytest.raises(Exception, match="extra"):
        load_symadit_config({"autoencoder": {"hiden": 3}})


def test_sampling_through_the_registry(overfit_run) -> None:
    """The CLI and the flows sample through the registry's typed request."""
    _, checkpoint = overfit_run
    model = get_model("symadit")
    request = SampleRequest(checkpoint=checkpoint, n=3, seed=2, steps=3)
    assert len(model.sample(request)) == 3
    cells = model.sample(request.model_copy(update={"n": 4, "spacegroups": [225]}))
    assert {r.spacegroup_requested for r in cells} == {225}
    with pytest.raises(ValueError, match="de novo"):
        model.sample(request.model_copy(update={"task": "csp"}))
    with pytest.raises(ValueError, match="does not take compositions"):
        model.sample(request.model_copy(update={"compositions": ["NaCl"]}))


def test_finetune_continues_the_flow_on_a_frozen_autoencoder(overfit_run, tmp_path) -> None:
    """Fine-tuning trains the flow only, records where it started, and a resumed call with
    the same budget skips the finished stage."""
    _, checkpoint = overfit_run
    data = write_token_dataset(sample_tokens(24), tmp_path / "new.parquet")
    budget = FineTune(init_from=checkpoint, steps=4)
    profile = small_config(1, 1, **{"flow_trainer.log_every": 1})
    tuned = finetune(profile, data, tmp_path / "tuned", budget)
    base, model = SymADiT.load(checkpoint), SymADiT.load(tuned)
    for name, weight in base.autoencoder.state_dict().items():
        assert torch.equal(weight, model.autoencoder.state_dict()[name]), name
    assert any(
        not torch.equal(w, model.flow.state_dict()[n]) for n, w in base.flow.state_dict().items()
    )
    extra = load_checkpoint(tuned)["extra"]
    assert TrainedOn.from_extra(extra) == TrainedOn(n_train=24, init_from=str(checkpoint))
    assert extra["flow_step"] == 4
    log = tmp_path / "tuned" / "flow" / "metrics.jsonl"
    assert [r["step"] for r in _metrics(log)] == [1, 2, 3, 4]
    finetune(profile, data, tmp_path / "tuned", budget, resume=True)
    assert [r["step"] for r in _metrics(log)] == [1, 2, 3, 4]  # complete: not trained again


def test_flow_validator_measures_validity_with_the_evaluations_rule(overfit_run) -> None:
    """SymADiT's training-time figures are MCFlow's: the structural rule and element count."""
    _, checkpoint = overfit_run
    model = SymADiT.load(checkpoint)
    metrics = flow_validator(model.autoencoder, model.stats, model.config)(model.flow, 0)
    assert set(metrics) == {"sample_expand_ok", "dng_struct_validity", "dng_mean_elements"}
    assert 0 < metrics["dng_struct_validity"] <= metrics["sample_expand_ok"] <= 1
    assert 1 <= metrics["dng_mean_elements"] <= 8
