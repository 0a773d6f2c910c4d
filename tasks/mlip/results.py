"""The outcome of one MLIP relaxation, and the conversions every engine shares."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
from ase import Atoms
from pymatgen.core import Structure

from tasks.core.records import STATUS_OK, STATUS_REJECTED, structure_from_json

#: One unit of input: (candidate id, pymatgen JSON of its structure).
Item = tuple[str, str]


@dataclass
class RelaxResult:
    """The outcome for one candidate (one row of the output table).

    ``status`` is ``ok`` (finished; ``converged`` says whether fmax was reached within the
    step limit), ``failed`` (stopped: NaN energy, volume explosion/collapse, overlapping
    atoms, time budget, calculator error; ``reason`` says which) or ``rejected`` (unusable
    input). ``rmsd`` is the RMS displacement of the sites (Å), measured in the relaxed cell
    with the mean shift removed; cell changes are in ``volume_ratio``. ``input_hash`` is the
    content hash of the input structure (resume is keyed by id and this hash).
    """

    id: str
    status: str = STATUS_OK
    reason: str = ""
    formula: str = ""
    n_atoms: int = 0
    structure: str = ""
    energy: float = math.nan
    energy_per_atom: float = math.nan
    steps: int = 0
    converged: bool = False
    fmax: float = math.nan
    rmsd: float = math.nan
    volume_ratio: float = math.nan
    wall_s: float = 0.0
    mlip: str = ""
    mlip_version: str = ""
    single_point: bool = False
    input_hash: str = ""


RESULT_COLUMNS = [f.name for f in fields(RelaxResult)]


def rejected(candidate_id: str, reason: str, input_hash: str = "") -> RelaxResult:
    """The row of an input that cannot be relaxed."""
    return RelaxResult(
        id=candidate_id, status=STATUS_REJECTED, reason=reason, input_hash=input_hash
    )


def results_frame(results: Sequence[RelaxResult]) -> pd.DataFrame:
    """Results as a DataFrame with the :class:`RelaxResult` columns."""
    return pd.DataFrame([asdict(r) for r in results], columns=RESULT_COLUMNS)


def parse_item(item: Item) -> Structure | RelaxResult:
    """The structure of an ``(id, structure JSON)`` item, or its ``rejected`` row."""
    candidate_id, text = item
    try:
        return structure_from_json(text)
    except Exception as err:
        return rejected(candidate_id, f"unreadable structure: {err}")


def structure_to_atoms(structure: Structure) -> Atoms:
    """Periodic ASE ``Atoms`` of a structure (species, cell, Cartesian positions only)."""
    return Atoms(
        symbols=[site.specie.symbol for site in structure],
        positions=structure.cart_coords,
        cell=structure.lattice.matrix,
        pbc=True,
    )


def atoms_to_structure(atoms: Atoms) -> Structure:
    """A plain pymatgen ``Structure`` of ``atoms`` (no calculator results, no constraints)."""
    return Structure(
        atoms.cell[:], atoms.get_chemical_symbols(), atoms.positions, coords_are_cartesian=True
    )


def displacement_rmsd(initial: Structure, final: Structure) -> float:
    """RMS site displacement (Å) between two structures with the same site order.

    Fractional displacements are wrapped to the nearest image, the mean shift is removed
    and the result is expressed in ``final``'s cell, so pure strain gives zero.
    """
    delta = final.frac_coords - initial.frac_coords
    delta -= np.round(delta)
    delta -= delta.mean(axis=0)
    cart = delta @ final.lattice.matrix
    return float(np.sqrt((cart**2).sum(axis=1).mean()))
