"""Carrying completed calculations between work directories (``tasks.dft.archive``).

The round trip with real CP2K results (a recomputed hull placed from imported phases) is
in ``test_cp2k.py``; these checks need no DFT: what an archive may hold, and that a bad one
writes nothing.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry
from typer.testing import CliRunner

from tasks.dft.archive import ArchiveError, export_completed, import_completed
from tasks.dft.recomputed_hull import completed_entry
from tasks.dft.settings import Cp2kSettings
from tasks.dft.submit import SubmitReport, register_calculations
from tasks.dft.workdir import (
    COMPLETED,
    FAILED,
    RUNNING,
    Candidate,
    calc_dir,
    read_state,
    store_paths,
    write_state,
)

NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def registered(workdir: Path) -> str:
    (calc_id,) = register_calculations(
        [Candidate("NaCl", NACL)], workdir, Cp2kSettings(), SubmitReport()
    )
    return calc_id


def archive_of(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:xz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def completed(workdir: Path, energy: float, settings: Cp2kSettings | None = None) -> str:
    """A calculation recorded as completed with a job document holding its entry."""
    (calc_id,) = register_calculations(
        [Candidate("NaCl", NACL)], workdir, settings or Cp2kSettings(), SubmitReport()
    )
    doc = {
        "uuid": calc_id,
        "metadata": {"calc_id": calc_id},
        "completed_at": "2026-12-07",
        "output": {
            "entry": ComputedEntry(NACL.composition, energy).as_dict(),
            "structure": NACL.as_dict(),
        },
    }
    docs, _ = store_paths(workdir, calc_id, 1)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(json.dumps([doc]))
    write_state(workdir, calc_id, COMPLETED, attempt=1)
    return calc_id


def energy(workdir: Path, calc_id: str) -> float:
    entry = completed_entry(workdir, calc_id)
    assert not isinstance(entry, str), entry
    return entry.energy


def test_completed_calculations_carry_to_another_work_directory(tmp_path) -> None:
    calc_id = completed(tmp_path / "cluster", -7.0)
    other = completed(tmp_path / "cluster", -9.0, Cp2kSettings(cutoff_ry=500))
    archive = tmp_path / "phases.tar.xz"
    assert export_completed(tmp_path / "cluster", archive, Cp2kSettings()) == [calc_id]
    assert other in export_completed(tmp_path / "cluster", tmp_path / "all.tar.xz")
    assert import_completed(archive, tmp_path / "laptop") == [calc_id]
    assert energy(tmp_path / "laptop", calc_id) == -7.0
    for file in (tmp_path / "laptop").rglob("*.json"):  # written at another time
        os.utime(file, (1e9, 1e9))
    export_completed(tmp_path / "laptop", tmp_path / "again.tar.xz")
    assert (tmp_path / "again.tar.xz").read_bytes() == archive.read_bytes()  # reproducible


def test_a_result_here_is_kept_and_a_failed_or_killed_one_replaced(tmp_path) -> None:
    calc_id = completed(tmp_path / "cluster", -7.0)
    archive = tmp_path / "phases.tar.xz"
    export_completed(tmp_path / "cluster", archive)
    completed(tmp_path / "done", -8.0)
    assert import_completed(archive, tmp_path / "done") == []
    assert energy(tmp_path / "done", calc_id) == -8.0
    for status, slurm_id, replaced in [
        (FAILED, "", True),
        (RUNNING, "", True),  # a killed local run: local runs hold the lock, import waits
        (RUNNING, "4242_0", False),  # on SLURM, perhaps still running there
    ]:
        workdir = tmp_path / f"{status}-{slurm_id}"
        registered(workdir)
        write_state(workdir, calc_id, status, slurm_id=slurm_id, reason="SCF")
        assert import_completed(archive, workdir) == ([calc_id] if replaced else [])
        assert (read_state(workdir, calc_id).status == COMPLETED) is replaced


def test_only_completed_calculations_are_exported(tmp_path) -> None:
    calc_id = registered(tmp_path / "work")
    write_state(tmp_path / "work", calc_id, FAILED, reason="SCF did not converge")
    assert export_completed(tmp_path / "work", tmp_path / "a.tar.xz") == []
    with tarfile.open(tmp_path / "a.tar.xz") as tar:
        assert tar.getnames() == []


@pytest.mark.parametrize("name", ["../evil.json", "calcs/x/calc.json", "notes.txt"])
def test_an_archive_holding_anything_else_is_refused_and_writes_nothing(tmp_path, name) -> None:
    archive = archive_of(tmp_path / "bad.tar.xz", {name: b"{}"})
    with pytest.raises(ArchiveError, match="is not a calculation record"):
        import_completed(archive, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_a_calculation_that_did_not_complete_is_refused(tmp_path) -> None:
    calc_id = registered(tmp_path / "source")
    state = write_state(tmp_path / "source", calc_id, FAILED, reason="SCF did not converge")
    folder = calc_dir(tmp_path / "source", calc_id)
    archive = archive_of(
        tmp_path / "failed.tar.xz",
        {
            f"calcs/{calc_id}/calc.json": (folder / "calc.json").read_bytes(),
            f"calcs/{calc_id}/state.json": state.model_dump_json().encode(),
            f"store/{calc_id}-1.json": b"[]",
        },
    )
    with pytest.raises(ArchiveError, match="status failed; only completed"):
        import_completed(archive, tmp_path / "work")
    assert not (tmp_path / "work").exists()


def test_the_cli_carries_calculations_and_names_a_bad_archive(tmp_path) -> None:
    from flows.cli import app

    calc_id = completed(tmp_path / "cluster", -7.0)
    archive = str(tmp_path / "phases.tar.xz")
    out = CliRunner().invoke(app, ["dft", "export", archive, "-w", str(tmp_path / "cluster")])
    assert out.exit_code == 0 and "1 completed calculations" in out.output, out.output
    out = CliRunner().invoke(app, ["dft", "import", archive, "-w", str(tmp_path / "laptop")])
    assert out.exit_code == 0 and "1 calculations added" in out.output, out.output
    assert energy(tmp_path / "laptop", calc_id) == -7.0
    (tmp_path / "notes.txt").write_text("not an archive")
    out = CliRunner().invoke(app, ["dft", "import", str(tmp_path / "notes.txt"), "-w", "x"])
    assert out.exit_code == 1 and "not imported" in out.output
    out = CliRunner().invoke(app, ["dft", "export", archive, "-w", str(tmp_path / "typo")])
    assert out.exit_code == 1 and "no DFT work directory" in out.output
