"""Guards of an MLIP relaxation: what is refused before the model runs, and what stops it.

Before: the structural sanity rule (:func:`tasks.core.checks.structure_problem`), elements
the potential was not trained on, and unphysically dense cells (whose neighbour graphs can
exhaust memory). During, after every step: non-finite or unphysically low energy, non-finite
forces, volume explosion or collapse, overlapping atoms, the time budget. Both engines use
these functions, so a candidate is judged the same way whichever engine relaxes it.
"""

from __future__ import annotations

import time
from collections.abc import Collection

import numpy as np
from ase import Atoms
from pymatgen.core import Structure

from tasks.core.checks import distance_problem, neighbor_pairs, structure_problem
from tasks.core.records import STATUS_REJECTED, structure_to_json
from tasks.mlip.results import (
    RelaxResult,
    atoms_to_structure,
    displacement_rmsd,
    structure_to_atoms,
)
from tasks.mlip.settings import RelaxConfig

#: A relaxation whose energy falls below this many eV per atom has left the potential's
#: domain (the most bound DFT phases sit near -13 eV/atom on the MP2020 scale); seen on a
#: P1 Gd cell that ran to -293 eV/atom and would otherwise have counted as "stable".
MIN_ENERGY_PER_ATOM = -25.0

#: Inputs with more neighbours than this per atom within DENSE_RADIUS Å are rejected.
DENSE_RADIUS = 2.0
MAX_DENSE_NEIGHBOURS = 16


class RelaxStopError(Exception):
    """Raised inside the optimisation loop to stop one candidate with a reason."""


def _overlap_reason(atoms: Atoms, min_distance: float) -> str:
    if min_distance <= 0 or len(atoms) == 0:
        return ""
    return distance_problem(
        atoms.cell[:], atoms.get_scaled_positions(wrap=False), atoms.get_chemical_symbols(),
        min_distance,
    )  # fmt: skip


def _density_reason(atoms: Atoms) -> str:
    """Refuse unphysically dense cells: their MLIP neighbour graphs can exhaust memory."""
    i, _, _ = neighbor_pairs(atoms.cell[:], atoms.get_scaled_positions(), DENSE_RADIUS)
    shells = len(i) / len(atoms)
    if shells > MAX_DENSE_NEIGHBOURS:
        return (
            f"unphysically dense: {shells:.0f} neighbours per atom within {DENSE_RADIUS} Å "
            f"(limit {MAX_DENSE_NEIGHBOURS})"
        )
    return ""


def unsupported_elements(structure: Structure, supported: Collection[str] | None) -> list[str]:
    """Elements of ``structure`` outside ``supported`` (``None`` = no restriction)."""
    if supported is None:
        return []
    return sorted({el.symbol for el in structure.composition.elements} - set(supported))


def check_progress(
    atoms: Atoms,
    energy: float,
    forces: np.ndarray,
    v0: float,
    config: RelaxConfig,
    deadline: float | None,
) -> None:
    """Stop a relaxation that went wrong (checked after every step).

    Parameters
    ----------
    atoms
        The current geometry.
    energy, forces
        The model's energy (eV) and forces (eV/Å) at that geometry.
    v0
        The initial cell volume (Å³).
    config
        Relaxation settings (volume ratio range, ``min_distance``, time budget).
    deadline
        ``time.perf_counter()`` value after which the candidate is stopped (``None``: never).

    Raises
    ------
    RelaxStopError
        Non-finite or unphysically low energy, non-finite forces, volume explosion or
        collapse, overlapping atoms or an exceeded time budget, with the reason.
    """
    if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise RelaxStopError(f"non-finite energy or forces (E={energy})")
    if energy / len(atoms) < MIN_ENERGY_PER_ATOM:
        raise RelaxStopError(
            f"unphysical energy: {energy / len(atoms):.1f} eV/atom < {MIN_ENERGY_PER_ATOM}"
        )
    ratio = atoms.get_volume() / v0
    if ratio > config.max_volume_ratio:
        raise RelaxStopError(f"volume explosion: V/V0={ratio:.2f} > {config.max_volume_ratio}")
    if ratio < config.min_volume_ratio:
        raise RelaxStopError(f"volume collapse: V/V0={ratio:.2f} < {config.min_volume_ratio}")
    overlap = _overlap_reason(atoms, config.min_distance)
    if overlap:
        raise RelaxStopError(overlap)
    if deadline is not None and time.perf_counter() > deadline:
        raise RelaxStopError(f"time budget exceeded ({config.time_budget_s} s)")


def screen_input(
    structure: Structure,
    config: RelaxConfig,
    candidate_id: str = "",
    supported: Collection[str] | None = None,
    model_name: str = "the MLIP",
) -> tuple[RelaxResult, Atoms | None]:
    """A candidate's result row and its ``Atoms``, checked before any model call.

    Parameters
    ----------
    structure
        The candidate.
    config
        Relaxation settings (``min_distance``).
    candidate_id
        Copied into the row.
    supported
        Elements the potential was trained on (``None``: not checked).
    model_name
        Named in the reason of an unsupported element.

    Returns
    -------
    result, atoms
        ``atoms`` is ``None`` and ``result`` is ``rejected`` with the reason when the input
        fails the structural rule, holds an element the potential does not know, or is
        unphysically dense.
    """
    result = RelaxResult(
        id=candidate_id,
        formula=structure.composition.reduced_formula if len(structure) else "",
        n_atoms=len(structure),
        single_point=config.single_point,
    )
    reason = structure_problem(structure, min_distance=config.min_distance)
    if not reason:
        missing = unsupported_elements(structure, supported)
        if missing:
            reason = f"element {', '.join(missing)} not supported by {model_name}"
    atoms = None
    if not reason:
        atoms = structure_to_atoms(structure)
        reason = _density_reason(atoms)
    if reason:
        result.status, result.reason = STATUS_REJECTED, f"input: {reason}"
        return result, None
    return result, atoms


def finish_result(
    result: RelaxResult, initial: Structure, atoms: Atoms, v0: float, start: float
) -> RelaxResult:
    """Fill in the final geometry, per-atom energy, volume ratio, RMSD and wall time."""
    final = atoms_to_structure(atoms)
    result.structure = structure_to_json(final)
    result.energy_per_atom = result.energy / len(atoms)
    result.volume_ratio = float(atoms.get_volume() / v0)
    result.rmsd = displacement_rmsd(initial, final)
    result.wall_s = time.perf_counter() - start
    return result
