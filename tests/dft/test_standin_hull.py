"""The local stand-in is consistent with its hull: a reference phase it recomputes is on it."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.structure_io import parse_payload, write_structures
from tasks.dft.settings import DftStageConfig
from tasks.dft.stage import mlip_reference_entries, run_dft_stage
from tasks.mlip.reference_table import SHIPPED_TABLE, load_table
from tasks.mlip.settings import RelaxConfig, ScreenSettings


def test_a_reference_recomputed_by_the_standin_lands_on_its_own_hull(tmp_path, monkeypatch):
    monkeypatch.setenv("VASP_STANDIN_STEPS", "2")
    table = load_table(SHIPPED_TABLE).frame
    nacl = table[table["formula"] == "NaCl"].sort_values("energy_per_atom").iloc[0]
    structure = parse_payload(nacl["crystal"], "compact")
    candidates = write_structures(
        [("cand-NaCl", structure), ("cand-NaCl-again", structure)], tmp_path / "c.parquet"
    )
    relax = RelaxConfig(steps=0, scheduler="serial")
    entries = mlip_reference_entries(candidates, ScreenSettings(relax=relax))
    results = run_dft_stage(candidates, tmp_path / "dft", DftStageConfig(mode="standin"), entries)
    rows = pd.read_parquet(results).set_index("id")
    # the same structure twice is one calculation; the second candidate keeps its row
    again = rows.loc["cand-NaCl-again"]
    assert again["dft_status"] == "rejected" and "candidate cand-NaCl:" in again["reason"]
    row = rows.loc["cand-NaCl"]
    assert row["dft_status"] == "completed"
    # CHGNet energies are on the MP2020 scale already: no second correction, so the phase
    # sits on its hull (2 stand-in relaxation steps move it a few meV/atom at most); with the
    # corrections applied twice it was ~0.3 eV/atom below
    assert row["e_hull_dft"] == pytest.approx(0.0, abs=0.02)
    assert row["corrected_energy_per_atom"] == pytest.approx(row["energy_per_atom"])
