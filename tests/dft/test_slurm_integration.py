"""End to end on a real one-node SLURM cluster with the VASP test double.

Start the cluster first: ``infra/slurm/start_local_cluster.sh`` (CI does). Without it
these tests skip and say so.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from support.dft import DEEP_LIF, ELEMENT_ENERGIES, all_settled, wait_until
from support.structures import diamond_si, rocksalt
from typer.testing import CliRunner

from flows.cli import app
from tasks.dft.settings import DftSettings, SlurmSettings
from tasks.dft.submit import submit_candidates
from tasks.dft.workdir import FAILED, Candidate

runner = CliRunner()


def _config(path: Path, standin_cmd: str, entries: Path, fail: str | None) -> Path:
    environment = {"VASP_STANDIN_STEPS": "2", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    if fail:
        environment["VASP_STANDIN_FAIL"] = fail
    config = {
        "dft": {"vasp_cmd": standin_cmd, "potcar_spec": True, "max_errors": 2},
        "slurm": {"walltime": "00:30:00", "environment": environment},
        "hull": {"entries_file": str(entries)},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}\n{result.exception!r}"
    return result.output


def test_submit_status_collect_resubmit(
    slurm: None,
    tmp_path: Path,
    candidates_dir: Path,
    reference_entries_file: Path,
    standin_cmd: str,
) -> None:
    workdir = tmp_path / "dft"
    failing = _config(tmp_path / "fail.yaml", standin_cmd, reference_entries_file, "MgO:crash")
    healthy = _config(tmp_path / "ok.yaml", standin_cmd, reference_entries_file, None)

    out = _invoke("dft", "submit", str(candidates_dir), "-w", str(workdir), "-c", str(failing))
    assert "4 submitted, 0 skipped, 1 rejected" in out
    assert "cand-bad: malformed cif" in out

    # Idempotent: the same candidates with the same settings start nothing new.
    out = _invoke("dft", "submit", str(candidates_dir), "-w", str(workdir), "-c", str(failing))
    assert "0 submitted, 4 skipped" in out
    assert len(list((workdir / "batches").glob("*.json"))) == 1

    wait_until(workdir, all_settled)
    statuses = {
        s["formula"]: s for s in json.loads(_invoke("dft", "status", "-w", str(workdir), "--json"))
    }
    assert {f: s["status"] for f, s in statuses.items()} == {
        "NaCl": "completed",
        "LiF": "completed",
        "Si": "completed",
        "MgO": "failed",
    }
    assert "crash requested" in statuses["MgO"]["reason"]

    # A failed calculation does not block collecting the others.
    _invoke("dft", "collect", "-w", str(workdir), "--entries", str(reference_entries_file))
    rows = {r["formula"]: r for r in json.loads((workdir / "dft_results.json").read_text())}
    assert rows["NaCl"]["e_hull_dft"] is not None
    assert rows["MgO"]["dft_status"] == "failed" and rows["MgO"]["e_hull_dft"] is None

    out = _invoke("dft", "resubmit", "-w", str(workdir), "--failed", "-c", str(healthy))
    assert "1 resubmitted" in out
    statuses_after = wait_until(workdir, all_settled)
    mgo = next(s for s in statuses_after if s.formula == "MgO")
    assert mgo.status == "completed" and mgo.attempt == 2

    out = _invoke("dft", "collect", "-w", str(workdir), "--entries", str(reference_entries_file))
    results = json.loads((workdir / "dft_results.json").read_text())
    rows = {r["formula"]: r for r in results if r["dft_status"] != "rejected"}
    assert set(rows) == {"NaCl", "LiF", "MgO", "Si"}
    assert all(
        r["dft_status"] == "completed" and r["e_hull_dft"] is not None for r in rows.values()
    )

    # Only elemental references in Na-Cl: E_hull is the corrected formation energy.
    nacl = rows["NaCl"]
    mean_elements = (ELEMENT_ENERGIES["Na"] + ELEMENT_ENERGIES["Cl"]) / 2
    assert nacl["e_hull_dft"] == pytest.approx(nacl["corrected_energy_per_atom"] - mean_elements)
    assert nacl["corrected_energy_per_atom"] < nacl["energy_per_atom"]  # MP2020 Cl correction
    assert nacl["stable"] and nacl["metastable"]
    assert rows["MgO"]["stable"]
    # Judged against the deep LiF reference, never against itself.
    assert rows["LiF"]["e_hull_dft"] > 0.1 and not rows["LiF"]["metastable"]
    assert rows["LiF"]["corrected_energy_per_atom"] > DEEP_LIF
    assert not rows["Si"]["stable"]  # one element: not a new stable compound

    summary = json.loads((workdir / "dft_summary.json").read_text())
    assert summary["sun"]["paper"] == "50.00 (2)" and summary["n_checked"] == 4
    assert "S.U.N. 50.00 (2)" in out


def test_job_killed_by_the_scheduler_is_recorded(
    slurm: None, tmp_path: Path, standin_cmd: str
) -> None:
    workdir = tmp_path / "dft"
    slurm_settings = SlurmSettings(walltime="00:30:00", environment={"VASP_STANDIN_FAIL": "hang"})
    dft = DftSettings(vasp_cmd=standin_cmd, potcar_spec=True)
    report = submit_candidates([Candidate("si", diamond_si())], workdir, dft, slurm_settings)
    assert report.job_id
    subprocess.run(["scancel", report.job_id], check=True)

    (status,) = wait_until(workdir, all_settled)
    assert status.status == FAILED
    assert "CANCELLED" in status.reason


@pytest.mark.slow
def test_prefect_dft_batch_flow(
    slurm: None, tmp_path: Path, reference_entries_file: Path, standin_cmd: str
) -> None:
    from prefect.testing.utilities import prefect_test_harness

    from flows.dft_batch import dft_batch
    from tasks.dft.settings import DftStageConfig

    folder = tmp_path / "candidates"
    folder.mkdir()
    rocksalt(5.69, "Na", "Cl", primitive=True).to(filename=str(folder / "nacl.cif"))
    config = DftStageConfig.model_validate(
        {
            "dft": {"vasp_cmd": standin_cmd, "potcar_spec": True},
            "slurm": {"walltime": "00:30:00", "environment": {"VASP_STANDIN_STEPS": "2"}},
            "hull": {"entries_file": str(reference_entries_file)},
        }
    )
    with prefect_test_harness(server_startup_timeout=180):
        summary = dft_batch(folder, tmp_path / "dft", config=config, poll_s=2, timeout_s=1200)
    assert summary["status_counts"] == {"completed": 1}
    assert summary["sun"]["paper"] == "100.00 (1)"
