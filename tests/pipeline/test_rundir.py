"""The run directory's closed-loop bookkeeping: discovered crystals join the references."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from tasks.core.config import ConfigError
from tasks.core.records import structure_to_json
from tasks.core.structure_io import read_structures
from tasks.mlip.hull import read_references
from tasks.pipeline.config import PipelineConfig
from tasks.pipeline.rundir import LAYOUT_VERSION, RunDir


def _json(species: list[str], a: float) -> str:
    coords = [[0, 0, 0], [0.5, 0.5, 0.5]][: len(species)]
    return structure_to_json(Structure(Lattice.cubic(a), species, coords))


def test_each_round_s_discoveries_are_a_reference_set_of_their_own(tmp_path) -> None:
    run = RunDir.open(tmp_path / "runs", "loop", PipelineConfig())
    round1 = pd.DataFrame({"id": ["new-1", "new-1"], "structure": [_json(["K", "Br"], 3.5)] * 2})
    first = run.add_discovered(round1, 1)
    round2 = pd.DataFrame({"id": ["new-2"], "structure": [_json(["Cs", "I"], 4.0)]})
    second = run.add_discovered(round2, 2)

    assert [first, second] == [run.path / "discovered" / f"round-{k}.parquet" for k in (1, 2)]
    frame = pd.read_parquet(first)
    assert list(frame["id"]) == ["new-1"] and list(frame["source"]) == ["round-1"]
    # both consumers of a reference set read it: the MLIP hull and the novelty filter
    refs = {r.id: r for path in (first, second) for r in read_references(path)}
    assert set(refs) == {"new-1", "new-2"}
    assert refs["new-1"].elements == frozenset({"K", "Br"}) and refs["new-1"].key
    read = {i: s for i, s, _ in read_structures(second)}
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


def test_a_run_json_of_another_layout_or_kind_is_refused(tmp_path) -> None:
    """``run.json`` is read as a typed document: another layout, or a file that is not one,
    is refused naming the run and what to do."""
    RunDir.open(tmp_path, "r2", PipelineConfig())
    meta = tmp_path / "r2" / "run.json"
    meta.write_text(json.dumps({"layout": 2, "config_hash": "x"}))
    with pytest.raises(ConfigError, match="made by layout 2"):
        RunDir.open(tmp_path, "r2", PipelineConfig())
    meta.write_text(json.dumps({"layout": LAYOUT_VERSION}))
    with pytest.raises(ConfigError, match=r"r2: .*config_hash.*start a new run id"):
        RunDir.open(tmp_path, "r2", PipelineConfig())
