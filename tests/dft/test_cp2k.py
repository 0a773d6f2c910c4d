"""Real CP2K (Debian's ``cp2k`` + ``cp2k-data``) through atomate2: one calculation at a time.

Cheap settings (200 Ry, a coarse k-mesh, a loose SCF; ``support.cp2k``) keep each
calculation to seconds; the physics checked does not depend on convergence: energies are
finite and per-atom sensible, cells CP2K mishandles are computed right, and a calculation
interrupted, failed or past its wall time is recorded and run again as the rules say. The
stage (the hull of recomputed phases, resuming, SLURM, the command) is
``test_cp2k_stage.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest
from monty.io import zopen
from pymatgen.core import Lattice, Structure
from support.cp2k import CHEAP, SILICON, table_phase

from tasks.dft.collect import collect_results
from tasks.dft.cp2k import (
    covered_elements,
    density_problem,
    spin_polarized,
    write_cp2k_inputs,
)
from tasks.dft.cp2k_stage import compute
from tasks.dft.local import run_batch_here
from tasks.dft.node import run_calculation
from tasks.dft.recomputed_hull import completed_entry
from tasks.dft.settings import (
    Cp2kSettings,
    DftHullConfig,
    DftStageConfig,
    cp2k_problem,
)
from tasks.dft.submit import SubmitReport, register_calculations
from tasks.dft.workdir import (
    COMPLETED,
    FAILED,
    RUNNING,
    Candidate,
    read_state,
    write_state,
)

pytestmark = pytest.mark.skipif(bool(cp2k_problem(CHEAP)), reason=cp2k_problem(CHEAP))
HARTREE_EV = 27.211386245988  # CODATA 2018, as pymatgen converts


def test_the_data_files_cover_71_elements_and_no_lanthanide() -> None:
    covered = covered_elements(Cp2kSettings())
    assert len(covered) == 71 and {"Si", "Na", "Cl", "O", "Fe", "Pt"} <= covered
    assert not covered & {"La", "Ce", "Nd", "Gd", "U"}


@pytest.mark.parametrize("name", ["Si", "NaCl"])
def test_single_points_run_through_atomate2(tmp_path, name) -> None:
    """One atomate2 CP2K static each: completed, closed shell, and the TaskDocument's
    energy is the total energy CP2K printed, converted from Hartree to eV; Si's is the
    -107.1 eV/atom of a CP2K run made by hand (400 Ry, 7x7x7 mesh)."""
    structure = SILICON if name == "Si" else table_phase("mp-22862")
    report = SubmitReport()
    (calc_id,) = register_calculations([Candidate(name, structure)], tmp_path, CHEAP, report)
    assert run_calculation(tmp_path, calc_id)
    entry = completed_entry(tmp_path, calc_id)
    assert not isinstance(entry, str), entry
    (output,) = (tmp_path / "calcs" / calc_id).glob("attempt-1/job_*/cp2k.out*")
    with zopen(output, "rt") as handle:
        printed = [line for line in handle if line.startswith(" ENERGY| Total FORCE_EVAL")]
    hartree = float(printed[-1].split()[-1])
    assert entry.energy == pytest.approx(hartree * HARTREE_EV, rel=1e-9)
    assert not spin_polarized(structure, CHEAP)
    (alone,) = collect_results(tmp_path, DftHullConfig())  # no recomputed phases given
    assert (alone.dft_status, alone.e_hull_dft) == ("no_hull", None)
    assert "never on Materials Project's entries" in alone.reason
    if name == "Si":
        assert entry.energy_per_atom == pytest.approx(-107.1, abs=0.3)


def test_a_sheared_cell_is_computed_in_its_reduced_cell(tmp_path) -> None:
    """Rhombohedral graphite (mp-569304, a competing phase of carbides) in its primitive
    cell, 11.9° between the axes, made CP2K's energy NaN at the first SCF step; it is
    computed in its Niggli-reduced cell (the same crystal) and completes."""
    graphite = table_phase("mp-569304")
    assert min(graphite.lattice.angles) < 15
    (calc_id,) = register_calculations([Candidate("C", graphite)], tmp_path, CHEAP, SubmitReport())
    assert run_calculation(tmp_path, calc_id)
    entry = completed_entry(tmp_path, calc_id)
    assert not isinstance(entry, str), entry
    assert -160 < entry.energy_per_atom < -140  # C GTH-PBE: about -155 eV/atom


def test_an_orthogonal_cell_keeps_its_electrons(tmp_path) -> None:
    """The Niggli reduction returns every orthogonal cell as (-a, -b, c); given that cell,
    CP2K "converged" in two SCF steps with no electrons on its grid (Bi, P, SnI3 and six
    more phases of the calibration, energies off by 40-1,400 eV/atom). Simple-cubic Si is
    computed with a positive diagonal and all its electrons; its input with the reduction's
    cell, run by CP2K by hand, loses them and :func:`density_problem` says so."""
    cubic = Structure(Lattice.cubic(2.53), ["Si"], [[0, 0, 0]])
    assert cubic.get_reduced_structure().lattice.matrix[0, 0] < 0  # what CP2K was given
    workdir = tmp_path / "w"
    (calc_id,) = register_calculations([Candidate("sc-Si", cubic)], workdir, CHEAP, SubmitReport())
    assert run_calculation(workdir, calc_id)
    entry = completed_entry(workdir, calc_id)
    assert not isinstance(entry, str), entry
    assert -108 < entry.energy_per_atom < -105  # diamond Si -107.1; simple cubic lies above
    (output,) = (workdir / "calcs" / calc_id).glob("attempt-1/job_*/cp2k.out*")
    assert density_problem(output) == ""

    by_hand = write_cp2k_inputs(cubic, tmp_path / "by-hand", CHEAP)
    text = (by_hand / "cp2k.inp").read_text()
    for axis, row in (("A", "2.53 0.0 0.0"), ("B", "0.0 2.53 0.0")):
        assert f"{axis} {row}\n" in text
        text = text.replace(f"{axis} {row}\n", f"{axis} {row.replace('2.53', '-2.53')}\n")
    (by_hand / "cp2k.inp").write_text(text)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CP2K_DATA_DIR": str(CHEAP.data_dir)}
    run = [CHEAP.cp2k_cmd, "-i", "cp2k.inp", "-o", "cp2k.out"]
    subprocess.run(run, cwd=by_hand, env=env, check=True, capture_output=True)
    assert "holds 0 of the 4 electrons" in density_problem(by_hand / "cp2k.out")


def test_an_interrupted_local_calculation_runs_again(tmp_path) -> None:
    """A calculation left 'running' by a killed run is run again (attempt 2) by the next."""
    (calc_id,) = register_calculations([Candidate("Si", SILICON)], tmp_path, CHEAP, SubmitReport())
    write_state(tmp_path, calc_id, RUNNING, attempt=1, batch="killed")
    compute([Candidate("Si", SILICON)], tmp_path, DftStageConfig(mode="cp2k", cp2k=CHEAP))
    state = read_state(tmp_path, calc_id)
    assert state is not None and (state.status, state.attempt) == ("completed", 2)
    assert not isinstance(completed_entry(tmp_path, calc_id), str)


def test_another_candidates_interrupted_calculation_is_left_alone(tmp_path) -> None:
    """A directory shared by several runs: the stage reruns its own candidates' interrupted
    calculations only (here: none to run), never another run's."""
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mine, other = Candidate("Si", SILICON), Candidate("NaCl", nacl)
    ids = register_calculations([mine, other], tmp_path, CHEAP, SubmitReport())
    write_state(tmp_path, ids[0], COMPLETED, attempt=1, batch="local-a")
    write_state(tmp_path, ids[1], RUNNING, attempt=1, batch="local-b")
    compute([mine], tmp_path, DftStageConfig(mode="cp2k", cp2k=CHEAP))
    state = read_state(tmp_path, ids[1])
    assert state is not None and (state.status, state.attempt) == (RUNNING, 1)
    assert not list(tmp_path.glob("calcs/*/attempt-2"))


def test_a_failed_local_calculation_is_resubmitted_here(tmp_path) -> None:
    """``discovery dft resubmit --failed --here``: a failed calculation runs again as its
    next attempt on this machine, with its own settings, and completes."""
    from typer.testing import CliRunner

    from flows.cli import app

    (calc_id,) = register_calculations([Candidate("Si", SILICON)], tmp_path, CHEAP, SubmitReport())
    write_state(tmp_path, calc_id, FAILED, attempt=1, reason="SCF not converged", batch="local-x")
    result = CliRunner().invoke(app, ["dft", "resubmit", "--failed", "--here", "-w", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{calc_id}: completed" in result.output
    state = read_state(tmp_path, calc_id)
    assert state is not None and (state.status, state.attempt) == ("completed", 2)


def test_a_calculation_past_its_wall_time_is_stopped_and_recorded(tmp_path) -> None:
    """``cp2k_run.wall_time_s``: run here, a calculation still running is stopped (CP2K
    with it) and recorded as failed with the reason, as SLURM's time limit would."""
    # 54 atoms, spin-polarized, a dense k-mesh: many minutes on any machine (a 2-atom cell
    # once finished inside the 40 s on CI), and CP2K has surely started at 40 s.
    slow = Cp2kSettings(spin="on", kpoints_density=1000)
    supercell = SILICON * (3, 3, 3)
    (calc_id,) = register_calculations(
        [Candidate("Si54", supercell)], tmp_path, slow, SubmitReport()
    )
    run_batch_here(tmp_path, [calc_id], {calc_id: 1}, slow, workers=1, wall_time_s=40)
    state = read_state(tmp_path, calc_id)
    assert state is not None and state.status == FAILED
    assert "stopped after the wall time of 40 s" in state.reason
    assert list(tmp_path.glob("calcs/*/attempt-1/job_*/cp2k.inp"))  # CP2K had started

    def working_here(pid: Path) -> bool:
        with contextlib.suppress(OSError):
            return Path(os.readlink(pid / "cwd")).is_relative_to(tmp_path)
        return False

    assert not [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and working_here(p)]


def test_a_calculation_stopped_from_outside_is_interrupted_not_failed(tmp_path) -> None:
    """Ctrl-C or ``kill`` on a local run (SIGTERM to its node process and CP2K) leaves the
    calculation active with the reason, so the next stage run computes it again instead of
    spending a failed attempt on it."""
    settings = Cp2kSettings()
    (calc_id,) = register_calculations(
        [Candidate("Si", SILICON)], tmp_path, settings, SubmitReport()
    )

    def stop_once_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = read_state(tmp_path, calc_id)
            if state is not None and state.status == RUNNING:
                break
            time.sleep(0.2)
        nodes = [
            child
            for child in psutil.Process().children()
            if "tasks.dft.node" in " ".join(child.cmdline())
        ]
        for node in nodes:
            for member in [*node.children(recursive=True), node]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(signal.SIGTERM)

    stopper = threading.Thread(target=stop_once_running)
    stopper.start()
    run_batch_here(tmp_path, [calc_id], {calc_id: 1}, settings, workers=1)
    stopper.join()
    state = read_state(tmp_path, calc_id)
    assert state is not None and (state.status, state.attempt) == (RUNNING, 1)
    assert state.reason.startswith("interrupted by SIGTERM, not failed (log: ")
