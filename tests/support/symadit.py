"""Shared helpers of the SymADiT tests: tokens from the bundled sample, small configs."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
from pymatgen.core import Structure

from representation.wyckoff_tokens import WyckoffTokens, structure_to_tokens
from tasks.core.paths import SAMPLES_DIR
from tasks.core.records import CrystalRecord, write_records


@lru_cache(maxsize=2)
def sample_tokens(n: int = 64) -> tuple[WyckoffTokens, ...]:
    """The first ``n`` crystals of the bundled MP-20 train sample, as Wyckoff tokens."""
    frame = pd.read_csv(SAMPLES_DIR / "mp20_train_sample1000.csv.gz").head(n)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for cif in frame["cif"]:
            out.append(structure_to_tokens(Structure.from_str(cif, fmt="cif")))
    return tuple(out)


def write_token_dataset(tokens: tuple[WyckoffTokens, ...], path: Path) -> Path:
    """A processed dataset (crystal records with only the fields SymADiT reads)."""
    records = [
        CrystalRecord(
            id=f"test:{i}",
            source="test",
            spacegroup=int(t.spacegroup),
            n_orbits=t.n_orbits,
            wyckoff=t.to_json(),
        )
        for i, t in enumerate(tokens)
    ]
    return write_records(records, path)


def small_config(ae_steps: int = 6, flow_steps: int = 6, **overrides: Any) -> dict[str, Any]:
    """A very small SymADiT config dict (seconds on a CPU)."""
    trainer = {
        "lr": 2e-3,
        "batch_size": 16,
        "max_epochs": None,
        "ema_decay": 0.9,
        "val_every": 0,
        "ckpt_every": 2,
        "log_every": 1,
        "progress": False,
        "device": "cpu",
    }
    cfg: dict[str, Any] = {
        "seed": 0,
        "data": {"val_fraction": 0.25, "max_val": 16},
        "autoencoder": {"hidden": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2},
        "flow": {"hidden": 32, "depth": 1, "heads": 2},
        "ae_trainer": {**trainer, "max_steps": ae_steps},
        "flow_trainer": {**trainer, "max_steps": flow_steps},
        "validation": {"n_expand": 4},
        "sampling": {"steps": 4, "guidance": 1.5, "batch_size": 16},
    }
    for key, value in overrides.items():
        section, _, leaf = key.partition(".")
        if leaf:
            cfg[section][leaf] = value
        else:
            cfg[section] = value
    return cfg
