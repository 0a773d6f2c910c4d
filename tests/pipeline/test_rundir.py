"""The run directory's closed-loop bookkeeping: discovered crystals join the references."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tasks.core.config import ConfigError
from tasks.core.records import CrystalRecord, structure_to_json, write_records
from tasks.core.structure_io import read_structures
from tasks.mlip.hull import read_references
from tasks.pipeline.config import PipelineConfig
from tasks.pipeline.rundir import RunDir


def _json(species: list[str], a: float) -> str:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)]
    return structure_to_json(Structure(Lattice.cubic(a), species, coords))


def test_discovered_crystals_join_the_next_reference_set(tmp_path) -> None:
    reference = write_records(
        [
            CrystalRecord(id="ref-1", source="t", formula="NaCl", structure=_json(["Na", "Cl"], 3)),
            CrystalRecord(id="bad", source="t", status="failed", reason="unreadable"),
        ],
        tmp_path / "reference.parquet",
    )
    run = RunDir.open(tmp_path / "runs", "loop", PipelineConfig())
    round1 = pd.DataFrame({"id": ["new-1"], "structure": [_json(["K", "Br"], 3.5)]})
    reference2 = run.add_discovered(reference, round1, 1)
    round2 = pd.DataFrame({"id": ["new-2"], "structure": [_json(["Cs", "I"], 4.0)]})
    reference3 = run.add_discovered(reference2, round2, 2)

    discovered = pd.read_parquet(run.path / "discovered" / "discovered.parquet")
    assert list(discovered["id"]) == ["new-1", "new-2"]
    assert list(discovered["source"]) == ["round-1", "round-2"]
    # both consumers of a reference set read it: the MLIP hull and the novelty filter
    refs = {r.id: r for r in read_references(reference3)}
    assert set(refs) == {"ref-1", "new-1", "new-2"}
    assert refs["new-1"].elements == frozenset({"K", "Br"}) and refs["new-1"].key
    read = {i: s for i, s, _ in read_structures(reference3)}
    assert read["new-2"].composition.reduced_formula == "CsI"


@pytest.mark.parametrize("run_id", ["../escape", "/abs/path", "a/b", "..", "", "sp ace"])
def test_run_ids_cannot_leave_the_run_root(tmp_path, run_id) -> None:
    with pytest.raises(ConfigError, match="run id"):
        RunDir.open(tmp_path / "runs", run_id, PipelineConfig())
    assert not (tmp_path / "escape").exists()


def test_resume_allows_placement_changes_and_refuses_others(tmp_path) -> None:
    config = PipelineConfig()
    RunDir.open(tmp_path, "r1", config)
    moved = config.model_copy(
        update={"evaluate": config.evaluate.model_copy(update={"workers": 7})}
    )
    assert RunDir.open(tmp_path, "r1", moved).path == tmp_path / "r1"  # where, not what
    other = config.model_copy(update={"seed": 5})
    with pytest.raises(ConfigError, match="another configuration"):
        RunDir.open(tmp_path, "r1", other)


def test_a_run_of_an_earlier_layout_is_refused_with_a_clear_message(tmp_path) -> None:
    old = tmp_path / "old-run"
    old.mkdir()
    (old / "config.yaml").write_text("profile: quick\n")
    with pytest.raises(ConfigError, match="earlier version of the pipeline"):
        RunDir.open(tmp_path, "old-run", PipelineConfig())
