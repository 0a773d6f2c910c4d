"""Fixtures of the DFT tests: tiny crystals, the VASP test double, references, SLURM."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from monty.json import MontyEncoder
from pymatgen.core import Composition, Lattice, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from tasks import hpc

STANDIN = Path(__file__).with_name("vasp_standin.py")

#: Approximate raw PBE energies (eV/atom) of the elemental ground states, close to the
#: Materials Project's; a test fixture standing in for an MP entries file.
ELEMENT_ENERGIES = {
    "Na": -1.31,
    "Cl": -1.84,
    "Li": -1.91,
    "F": -1.91,
    "Mg": -1.60,
    "O": -4.95,
    "Si": -5.42,
}
#: MP's POTCAR symbols for those elements (MPRelaxSet).
POTCARS = {"Na": "Na_pv", "Cl": "Cl", "Li": "Li_sv", "F": "F", "Mg": "Mg_pv", "O": "O", "Si": "Si"}
#: A deliberately deep LiF reference: a LiF candidate must end up above the hull.
DEEP_LIF = -10.0


def rocksalt(a: float, cation: str, anion: str) -> Structure:
    """Primitive rock-salt cell (2 atoms)."""
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ).get_primitive_structure()


def diamond_si() -> Structure:
    """Primitive diamond Si (2 atoms)."""
    return Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]
    ).get_primitive_structure()


def reference_entry(formula: str, energy_per_atom: float, entry_id: str) -> ComputedEntry:
    """A GGA reference entry with the parameters MP2020 corrections need."""
    comp = Composition(formula)
    titles = [{"titel": f"PAW_PBE {POTCARS[el.symbol]} 01Jan2000"} for el in comp.elements]
    return ComputedEntry(
        comp,
        energy_per_atom * comp.num_atoms,
        entry_id=entry_id,
        parameters={"run_type": "GGA", "is_hubbard": False, "hubbards": {}, "potcar_spec": titles},
    )


@pytest.fixture
def reference_entries_file(tmp_path: Path) -> Path:
    """Entries JSON: the elements above plus the deep LiF phase."""
    entries = [reference_entry(el, e, f"ref-{el}") for el, e in ELEMENT_ENERGIES.items()]
    entries.append(reference_entry("LiF", DEEP_LIF, "ref-LiF"))
    path = tmp_path / "reference_entries.json"
    path.write_text(json.dumps(entries, cls=MontyEncoder))
    return path


@pytest.fixture
def candidates_dir(tmp_path: Path) -> Path:
    """Four tiny candidates (NaCl, LiF, MgO, Si) and one unreadable CIF."""
    folder = tmp_path / "candidates"
    folder.mkdir()
    rocksalt(5.69, "Na", "Cl").to(filename=str(folder / "cand-NaCl.cif"))
    rocksalt(4.03, "Li", "F").to(filename=str(folder / "cand-LiF.cif"))
    rocksalt(4.21, "Mg", "O").to(filename=str(folder / "cand-MgO.cif"))
    diamond_si().to(filename=str(folder / "cand-Si.cif"))
    (folder / "cand-bad.cif").write_text("data_broken\n_cell_length_a nonsense\n")
    return folder


@pytest.fixture(scope="session")
def standin_cmd() -> str:
    """The VASP command that runs the test double."""
    return f"{sys.executable} {STANDIN}"


def slurm_unavailable_reason() -> str | None:
    """Why the local SLURM cluster cannot be used, or None when it is up."""
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"sinfo not usable ({err}); start it with infra/slurm/start_local_cluster.sh"
    states = proc.stdout.split()
    if proc.returncode != 0 or not any(s.startswith(("idle", "mix", "alloc")) for s in states):
        return (
            f"no usable SLURM node (sinfo rc={proc.returncode}, states={states}, "
            f"{proc.stderr.strip()}); start it with infra/slurm/start_local_cluster.sh"
        )
    return None


@pytest.fixture(scope="session")
def slurm() -> None:
    """Skip (with the reason) unless a SLURM cluster answers ``sinfo``."""
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)


def wait_until(
    workdir: Path, done: Callable[[list[hpc.CalcStatus]], bool], limit_s: float = 1200
) -> list[hpc.CalcStatus]:
    """Poll the work directory until ``done(statuses)``; fail (not hang) past ``limit_s``."""
    start = time.monotonic()
    while True:
        statuses = hpc.calc_statuses(workdir)
        if done(statuses):
            return statuses
        if time.monotonic() - start > limit_s:
            logs = "\n".join(p.read_text()[-2000:] for p in (workdir / "logs").glob("*.out"))
            pytest.fail(f"SLURM batch not finished after {limit_s} s: {statuses}\n{logs}")
        time.sleep(2)


def all_settled(statuses: list[hpc.CalcStatus]) -> bool:
    """No calculation is submitted or running."""
    return all(s.status not in hpc.ACTIVE for s in statuses)
