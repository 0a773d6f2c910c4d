"""A micro profile of the whole loop: tiny models trained for a few steps, few samples."""

from __future__ import annotations

from pathlib import Path

import yaml

from tasks.core.paths import CONFIGS_DIR


def _micro_model(name: str, tmp: Path) -> Path:
    config = yaml.safe_load((CONFIGS_DIR / name / "tiny.yaml").read_text())
    if name == "mcflow":
        config["train"].update(max_epochs=None, max_steps=30, val_every=30, ckpt_every=30)
        config["validation"]["n_samples"] = 4
    else:
        for stage in ("ae_trainer", "flow_trainer"):
            config[stage].update(max_steps=30, val_every=30, ckpt_every=30)
        config["validation"]["n_expand"] = 4
    path = tmp / f"{name}-micro.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def micro_profile(
    tmp: Path,
    train_csv: Path,
    models: tuple[str, ...] = ("mcflow",),
    samples: Path | None = None,
) -> Path:
    """Write a pipeline profile that runs end to end in a couple of minutes on 2 cores.

    ``samples``: a structure set screened beside the models (a ``samples`` entry, label
    ``released``, its first 8 crystals).
    """
    profile = {
        "profile": "micro",
        "seed": 0,
        "run_root": str(tmp / "runs"),
        "datasets": {"train": {"kind": "csv", "path": str(train_csv), "limit": 60}},
        "ingest": {"n_workers": 1, "cache_dir": str(tmp / "cache"), "plots": False},
        "models": [
            {"name": m, "profile": str(_micro_model(m, tmp)), "n_samples": 8, "steps": 5}
            for m in models
        ]
        + (
            [{"name": "samples", "path": str(samples), "label": "released", "limit": 8}]
            if samples is not None
            else []
        ),
        "evaluate": {"workers": 1, "cache_dir": str(tmp / "cache")},
        "relax": {"steps": 15, "fmax": 0.2, "chunk_size": 1, "scheduler": "serial"},
        "hull": {"cache_dir": str(tmp / "cache" / "hull"), "energies": "table"},
        "selection": {"strategy": "ranked", "max_relax": 3, "n_dft": 1},
        "dft": {"mode": "standin"},
        "dask": {"cluster": "local", "n_workers": 2},
    }
    path = tmp / "micro.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path
