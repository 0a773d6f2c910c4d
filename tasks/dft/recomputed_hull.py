"""A hull of recomputed competing phases: each candidate's references, computed like it.

CP2K energies are on no database's scale, so a CP2K candidate cannot be placed on Materials
Project's hull or on an MLIP's. Its references are recomputed with the candidate's own
settings instead: the phases its composition decomposes into on the MLIP hull (the shipped
table's MP-20 / MPTS-52 phases, at their DFT geometries) and the ground state of each of its
elements there. They run in a DFT work directory shared by every run
(:class:`tasks.dft.settings.Cp2kStageConfig` ``references``), where a calculation's id is
its structure and settings hash: a phase is computed once per settings, across candidates,
rounds and runs.

:func:`competing_sets` chooses each candidate's phases, :func:`reference_candidates` lists
them once for the DFT stage to compute, and :func:`competing_entries` returns, per candidate
calculation, the recomputed entries (raw energies: no correction applies to them) or, when
one of them is missing, why: such a candidate is ``no_hull`` with that reason, never
dropped. The hull holds only the phases the MLIP hull put on the candidate's facet: a phase
the MLIP wrongly places above its hull is not recomputed, so a DFT E_hull can be too low by
as much as the MLIP misjudged that phase.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Element, Structure
from pymatgen.entries.computed_entries import ComputedEntry

from tasks.dft.collect import entry_from_task_output
from tasks.dft.settings import CalcSettings
from tasks.dft.workdir import COMPLETED, Candidate, calc_id_for, load_outputs, read_state
from tasks.mlip.backends import load_mlip
from tasks.mlip.hull import HullError, MLIPHull, Reference, hull_references
from tasks.mlip.settings import ScreenSettings

log = logging.getLogger(__name__)


@dataclass
class CompetingSet:
    """The phases a candidate's calculation is judged against, or why none were chosen."""

    calc_id: str
    phases: list[Reference]
    problem: str = ""


def competing_sets(
    candidates: Sequence[tuple[str, Structure]],
    screen: ScreenSettings,
    extra_references: Sequence[str | Path] = (),
) -> list[CompetingSet]:
    """Each candidate's decomposition phases and elemental ground states on the MLIP hull.

    Parameters
    ----------
    candidates
        ``(calculation id, structure)`` of the candidates (their computed structures).
    screen
        The MLIP screen whose hull (the shipped table by default) chooses the phases.
    extra_references
        More reference sets the MLIP hull holds (earlier rounds' discoveries).
    """
    if not candidates:  # nothing to place: no MLIP to load
        return []
    references = hull_references(screen.hull, load_mlip(screen.mlip).version, extra_references)
    hull = MLIPHull(references, screen)
    out = []
    for calc_id, structure in candidates:
        elements = frozenset(el.symbol for el in structure.composition.elements)
        try:
            diagram = hull.phase_diagram(elements)
        except HullError as err:
            out.append(CompetingSet(calc_id, [], f"no MLIP hull to choose from: {err}"))
            continue
        on_hull = [*diagram.get_decomposition(structure.composition)]
        on_hull += [diagram.el_refs[Element(el)] for el in elements]
        names = {cast(PDEntry, entry).name for entry in on_hull}
        phases = hull.phases(elements)
        out.append(CompetingSet(calc_id, [phases[name] for name in sorted(names)]))
    return out


def reference_candidates(sets: Sequence[CompetingSet]) -> list[Candidate]:
    """Every phase of the sets once, as DFT candidates named by their reference ids."""
    seen: dict[str, Candidate] = {}
    for competing in sets:
        for ref in competing.phases:
            if ref.id not in seen:
                seen[ref.id] = Candidate(ref.id, ref.structure())
    return list(seen.values())


def completed_entry(workdir: Path, calc_id: str) -> ComputedEntry | str:
    """The raw entry of a completed calculation, or why there is none."""
    state = read_state(workdir, calc_id)
    if state is None:
        return "never computed"
    if state.status != COMPLETED:
        return f"{state.status}: {state.reason.splitlines()[0][:200] if state.reason else ''}"
    docs = load_outputs(workdir, calc_id, state.attempt)
    if not docs:
        return "completed but no output in the store"
    return entry_from_task_output(docs[0]["output"], entry_id=calc_id)


def competing_entries(
    sets: Sequence[CompetingSet], workdir: Path, settings: CalcSettings
) -> dict[str, list[ComputedEntry] | str]:
    """Per candidate calculation, its phases' recomputed entries, or why one is missing.

    Parameters
    ----------
    sets
        The candidates' competing sets (:func:`competing_sets`).
    workdir
        The references' DFT work directory.
    settings
        The settings the phases were computed with (the candidates').
    """
    calc_ids = {c.id: calc_id_for(c, settings) for c in reference_candidates(sets)}
    out: dict[str, list[ComputedEntry] | str] = {}
    for competing in sets:
        if competing.problem:
            out[competing.calc_id] = competing.problem
            continue
        entries: list[ComputedEntry] = []
        for ref in competing.phases:
            got = completed_entry(workdir, calc_ids[ref.id])
            if isinstance(got, str):
                formula = ref.structure().composition.reduced_formula
                out[competing.calc_id] = f"competing phase {ref.id} ({formula}): {got}"
                break
            entries.append(ComputedEntry(got.composition, got.energy, entry_id=f"ref:{ref.id}"))
        else:
            out[competing.calc_id] = entries
    return out
