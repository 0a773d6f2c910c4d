"""Cheap CP2K settings and crystals shared by the CP2K tests."""

from __future__ import annotations

from pathlib import Path

from pymatgen.core import Lattice, Structure

from tasks.core.structure_io import parse_payload
from tasks.dft.settings import Cp2kSettings
from tasks.mlip.reference_table import SHIPPED_TABLE, load_table

#: 200 Ry, a coarse k-mesh and a loose SCF: seconds per calculation, physics unchanged in kind.
CHEAP = Cp2kSettings(cutoff_ry=200, rel_cutoff_ry=30, kpoints_density=16, eps_scf=1e-5)

SILICON = Structure(
    Lattice([[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]]),
    ["Si", "Si"],
    [[0, 0, 0], [0.25, 0.25, 0.25]],
)


def stage_config(tmp_path: Path) -> str:
    """A DFT stage YAML whose competing phases go to ``tmp_path/refs``, not the shared cache."""
    path = tmp_path / "stage.yaml"
    path.write_text(f"cp2k_run:\n  references: {tmp_path / 'refs'}\n")
    return str(path)


def table_phase(material_id: str) -> Structure:
    """A phase of the shipped hull table at its DFT geometry."""
    frame = load_table(SHIPPED_TABLE).frame
    return parse_payload(frame.loc[frame["id"] == material_id, "crystal"].iloc[0], "compact")
