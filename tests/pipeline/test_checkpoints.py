"""The round's checkpoint record: what a model's trainer stores, read back typed."""

from __future__ import annotations

import pytest
import torch

from models.contract import TrainedOn
from models.training.checkpoint import save_checkpoint
from tasks.core.documents import DocumentError
from tasks.pipeline.checkpoints import CheckpointInfo, checkpoint_info, write_checkpoint_info


def _checkpoint(path, extra):
    return save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "step": 1, "extra": extra})


def test_trained_on_round_trips_through_a_checkpoint(tmp_path):
    tuned = TrainedOn(n_train=120, init_from="runs/x/best.pt")
    path = _checkpoint(tmp_path / "a.pt", {"priors": {}, **tuned.as_extra()})
    info = checkpoint_info(path)
    assert (info.n_train, info.init_from) == (120, "runs/x/best.pt")
    assert len(info.checkpoint_id) == 12 and info.checkpoint == str(path)


def test_a_checkpoint_without_the_record_has_none(tmp_path):
    info = checkpoint_info(_checkpoint(tmp_path / "b.pt", {"stats": {}}))
    assert info.n_train is None and info.init_from is None
    with pytest.raises(ValueError, match="n_train"):
        TrainedOn.from_extra({"n_train": -1})


def test_the_record_is_rewritten_only_when_it_changes(tmp_path):
    path = _checkpoint(tmp_path / "c.pt", TrainedOn(n_train=5).as_extra())
    out = write_checkpoint_info(path, tmp_path / "checkpoint.json")
    mtime = out.stat().st_mtime_ns
    write_checkpoint_info(path, out)
    assert out.stat().st_mtime_ns == mtime
    assert CheckpointInfo.read(out) == checkpoint_info(path)
    _checkpoint(path, TrainedOn(n_train=6).as_extra())
    assert CheckpointInfo.read(write_checkpoint_info(path, out)).n_train == 6


def test_a_document_of_another_version_is_a_clear_error(tmp_path):
    old = tmp_path / "checkpoint.json"
    old.write_text('{"checkpoint": "a.pt", "checkpoint_id": "x", "trained": 5}')
    with pytest.raises(DocumentError, match=r"checkpoint.json is not a CheckpointInfo.*trained"):
        CheckpointInfo.read(old)
