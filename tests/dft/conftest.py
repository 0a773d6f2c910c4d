"""Fixtures of the DFT tests: tiny crystals, references, the stand-in, SLURM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monty.json import MontyEncoder
from support.dft import (
    DEEP_LIF,
    ELEMENT_ENERGIES,
    STANDIN_CMD,
    reference_entry,
    slurm_unavailable_reason,
)
from support.structures import diamond_si, rocksalt


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
    rocksalt(5.69, "Na", "Cl", primitive=True).to(filename=str(folder / "cand-NaCl.cif"))
    rocksalt(4.03, "Li", "F", primitive=True).to(filename=str(folder / "cand-LiF.cif"))
    rocksalt(4.21, "Mg", "O", primitive=True).to(filename=str(folder / "cand-MgO.cif"))
    diamond_si().to(filename=str(folder / "cand-Si.cif"))
    (folder / "cand-bad.cif").write_text("data_broken\n_cell_length_a nonsense\n")
    return folder


@pytest.fixture(scope="session")
def standin_cmd() -> str:
    """The VASP command that runs the test double."""
    return STANDIN_CMD


@pytest.fixture(scope="session")
def slurm() -> None:
    """Skip (with the reason) unless a SLURM cluster answers ``sinfo``."""
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
