"""A micro profile of the whole loop: tiny models trained for a few steps, few samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.profiles import micro_profile


@pytest.fixture()
def micro(tmp_path, mp20_train_sample, monkeypatch) -> Path:
    monkeypatch.setenv("VASP_STANDIN_STEPS", "2")
    return micro_profile(tmp_path, mp20_train_sample)
