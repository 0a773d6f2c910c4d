"""The atomate2 flow through custodian and the VASP test double, without a scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobflow import run_locally
from support.structures import rocksalt

from tasks.core.records import structure_to_json
from tasks.dft.collect import entry_from_task_output
from tasks.dft.makers import make_relax_flow
from tasks.dft.node import run_calculation
from tasks.dft.settings import DftSettings, settings_hash
from tasks.dft.workdir import (
    FAILED,
    SUBMITTED,
    CalcInput,
    load_outputs,
    open_job_store,
    read_state,
    write_calc,
    write_state,
)


def test_tetrahedron_failure_falls_back_to_gaussian_smearing(
    tmp_path: Path, standin_cmd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VASP_STANDIN_FAIL", "tet")
    monkeypatch.setenv("VASP_STANDIN_STEPS", "2")
    monkeypatch.chdir(tmp_path)
    settings = DftSettings(vasp_cmd=standin_cmd, potcar_spec=True)
    flow = make_relax_flow(rocksalt(5.69, "Na", "Cl", primitive=True), settings, name="nacl")
    flow.update_metadata({"calc_id": "nacl"})
    store = open_job_store(tmp_path, "nacl", 1, read_only=False)
    run_locally(
        flow, store=store, root_dir=tmp_path / "run", create_folders=True, ensure_success=True
    )

    (doc,) = load_outputs(tmp_path, "nacl", 1)
    task = doc["output"]
    assert task["state"] == "successful"
    assert task["task_type"] == "Structure Optimization"
    (custodian_run,) = task["custodian"]
    (correction,) = custodian_run["corrections"]
    assert correction["errors"] == ["tet"]
    final_incar = task["calcs_reversed"][0]["input"]["incar"]
    assert final_incar["ISMEAR"] == 0 and final_incar["SIGMA"] == 0.05
    assert task["input"]["parameters"]["ENCUT"] == 520

    entry = entry_from_task_output(task, entry_id="nacl")
    assert entry.parameters["run_type"] == "GGA"
    assert entry.composition.reduced_formula == "NaCl"
    assert entry.uncorrected_energy == pytest.approx(task["output"]["energy"])


def test_crashing_vasp_is_recorded_with_its_reason(
    tmp_path: Path, standin_cmd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VASP_STANDIN_FAIL", "crash")
    settings = DftSettings(vasp_cmd=standin_cmd, potcar_spec=True, max_errors=1)
    calc_id = f"abc-{settings_hash(settings)}"
    write_calc(
        tmp_path,
        CalcInput(
            calc_id=calc_id,
            candidate_id="cand",
            formula="NaCl",
            structure_hash="abc",
            settings_hash=settings_hash(settings),
            structure=structure_to_json(rocksalt(5.69, "Na", "Cl", primitive=True)),
            settings=settings.model_dump(mode="json"),
        ),
    )
    write_state(tmp_path, calc_id, SUBMITTED, attempt=1)
    cwd = Path.cwd()

    assert run_calculation(tmp_path, calc_id) is False
    assert Path.cwd() == cwd
    state = read_state(tmp_path, calc_id)
    assert state is not None and state.status == FAILED
    assert "ValidationError" in state.reason
    assert "crash requested" in state.reason  # the tail of the VASP output


@pytest.mark.slow
def test_double_relax_and_static_run_end_to_end(
    tmp_path: Path, standin_cmd: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VASP_STANDIN_STEPS", "2")
    monkeypatch.chdir(tmp_path)
    settings = DftSettings(vasp_cmd=standin_cmd, potcar_spec=True, double_relax=True, static=True)
    flow = make_relax_flow(rocksalt(5.69, "Na", "Cl", primitive=True), settings, name="nacl")
    flow.update_metadata({"calc_id": "nacl"})
    store = open_job_store(tmp_path, "nacl", 1, read_only=False)
    run_locally(
        flow, store=store, root_dir=tmp_path / "run", create_folders=True, ensure_success=True
    )

    docs = load_outputs(tmp_path, "nacl", 1)
    assert [d["name"] for d in docs] == ["MP GGA static", "MP GGA relax 2", "MP GGA relax 1"]
    static = docs[0]["output"]
    assert static["state"] == "successful"
    assert static["task_type"] == "Static"
    assert static["input"]["parameters"]["NSW"] == 0
