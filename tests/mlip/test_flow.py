"""The Prefect flow runs the same functions end to end (slow: starts a Prefect server)."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.mlip.settings import MLIPHullConfig, RelaxConfig


@pytest.mark.slow
def test_mlip_screen_flow(tmp_path, mp20_train_sample, alpd_reference):
    from flows.mlip import mlip_screen_flow

    frame = pd.read_csv(mp20_train_sample)
    frame[frame["material_id"] == "mp-829"].to_csv(tmp_path / "c.csv.gz", index=False)
    path = mlip_screen_flow(
        str(tmp_path / "c.csv.gz"),
        str(tmp_path / "run"),
        relax=RelaxConfig(scheduler="serial"),
        hull=MLIPHullConfig(
            reference=[alpd_reference], energies="relaxed", cache_dir=tmp_path / "cache"
        ),
    )
    row = pd.read_parquet(path).iloc[0]
    assert row["hull_status"] == "ok" and row["e_hull"] == pytest.approx(0.0, abs=1e-6)
    assert (tmp_path / "run" / "relax" / "relaxed.parquet").is_file()
