"""DFT test helpers: reference entries, the stand-in command, the local SLURM cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pymatgen.core import Composition
from pymatgen.entries.computed_entries import ComputedEntry

from tasks.dft.submit import CalcStatus, calc_statuses
from tasks.dft.workdir import ACTIVE

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
#: The VASP command that runs the in-package test double.
STANDIN_CMD = f"{sys.executable} -m tasks.dft.standin"


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


def wait_until(
    workdir: Path, done: Callable[[list[CalcStatus]], bool], limit_s: float = 1200
) -> list[CalcStatus]:
    """Poll the work directory until ``done(statuses)``; fail (not hang) past ``limit_s``."""
    start = time.monotonic()
    while True:
        statuses = calc_statuses(workdir)
        if done(statuses):
            return statuses
        if time.monotonic() - start > limit_s:
            logs = "\n".join(p.read_text()[-2000:] for p in (workdir / "logs").glob("*.out"))
            pytest.fail(f"SLURM batch not finished after {limit_s} s: {statuses}\n{logs}")
        time.sleep(2)


def all_settled(statuses: list[CalcStatus]) -> bool:
    """No calculation is submitted or running."""
    return all(s.status not in ACTIVE for s in statuses)
