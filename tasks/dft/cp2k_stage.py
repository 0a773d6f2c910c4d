"""The DFT stage with CP2K: candidates, then their recomputed competing phases, then E_hull.

1. Candidates whose elements CP2K's basis or potential file lacks are rejected with the
   reason (reported, never dropped); the rest are computed here (``workers`` local
   processes) or on SLURM, exactly like the VASP path's calculations
   (:mod:`tasks.dft.workdir`, :mod:`tasks.dft.node`).
2. For each completed candidate, its competing phases on the MLIP hull are computed with the
   same settings in the shared references directory, once per settings
   (:mod:`tasks.dft.recomputed_hull`); on a resumed stage, the phases of the candidates
   earlier runs completed are computed before the candidates still to do.
3. E_hull against those phases (raw CP2K energies on both sides, no MP2020 correction);
   ``dft_summary.json`` names the energies with :meth:`Cp2kSettings.label`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from filelock import FileLock
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedEntry

from tasks.core.dft_results import read_dft_results
from tasks.core.records import structure_from_json
from tasks.core.stability import StabilityRule
from tasks.dft.collect import collect_results, decode_entry, dft_counts, write_results
from tasks.dft.cp2k import Cp2kUnavailableError, missing_elements
from tasks.dft.local import run_batch_here
from tasks.dft.recomputed_hull import (
    CompetingSet,
    competing_entries,
    competing_sets,
    reference_candidates,
)
from tasks.dft.settings import Cp2kSettings, DftStageConfig, cp2k_problem
from tasks.dft.stage import submit_and_wait
from tasks.dft.submit import (
    SubmitReport,
    calc_statuses,
    read_candidates,
    register_calculations,
)
from tasks.dft.workdir import (
    ACTIVE,
    COMPLETED,
    FAILED,
    LOCK,
    Candidate,
    calc_id_for,
    made_with,
    read_calc,
    read_state,
)
from tasks.mlip.settings import ScreenSettings

log = logging.getLogger(__name__)


#: Why a calculation of the work directory made with other settings gets no E_hull here.
OTHER_SETTINGS = (
    "computed with other settings (or another code) than this stage's: its energy cannot "
    "share a hull with phases recomputed with these settings"
)


def earlier_entries(paths: Sequence[Path], settings: Cp2kSettings) -> list[ComputedEntry]:
    """Crystals earlier rounds computed with the same CP2K settings, as references: confirmed
    crystals join the next round's hull."""
    out = []
    for path in paths:
        for result in read_dft_results(path.expanduser()):
            ours = made_with(result.calc_id, settings)
            if result.dft_status == COMPLETED and result.entry and ours:
                out.append(decode_entry(result.entry, str(path)))
    return out


def with_basis_check(candidates: list[Candidate], settings: Cp2kSettings) -> list[Candidate]:
    """The candidates, those with an element the settings' data files lack rejected."""
    out = []
    for candidate in candidates:
        if candidate.structure is not None and (
            lacking := missing_elements(candidate.structure, settings)
        ):
            reason = (
                f"CP2K has no {settings.basis} basis / {settings.potential} potential for "
                f"{', '.join(lacking)} (in {settings.basis_file}, {settings.potential_file})"
            )
            candidate = Candidate(candidate.id, None, reason)
        out.append(candidate)
    return out


def compute(candidates: list[Candidate], workdir: Path, config: DftStageConfig) -> None:
    """Compute the candidates not computed yet in ``workdir`` (here or on SLURM) and wait.

    Run here, smallest cells first, it holds the directory's lock (one process computes a
    directory at a time: branches side by side share the references), so a calculation of
    these candidates still marked submitted or running was interrupted and runs again as its
    next attempt; so does a failed one below ``cp2k_run.max_attempts`` attempts.
    Calculations of other candidates in the directory are left as they are.
    """
    settings = config.cp2k
    if config.cp2k_run.run_on == "slurm":
        submit_and_wait(candidates, workdir, settings, config)
        return
    workdir.mkdir(parents=True, exist_ok=True)
    with FileLock(workdir / LOCK):
        _compute_here(candidates, workdir, config)


def _compute_here(candidates: list[Candidate], workdir: Path, config: DftStageConfig) -> None:
    settings = config.cp2k
    attempts: dict[str, int] = {}
    for candidate in candidates:
        if candidate.structure is None:
            continue
        calc_id = calc_id_for(candidate, settings)
        state = read_state(workdir, calc_id)
        if state is None:
            continue
        retry = state.status == FAILED and state.attempt < config.cp2k_run.max_attempts
        if state.status in ACTIVE or retry:
            attempts[calc_id] = state.attempt + 1
    new = register_calculations(candidates, workdir, settings, SubmitReport())
    attempts |= dict.fromkeys(new, 1)
    if attempts:
        placement = config.cp2k_run
        run_batch_here(
            workdir, list(attempts), attempts, settings, placement.workers, placement.wall_time_s
        )


def completed(workdir: Path, settings: Cp2kSettings) -> list[tuple[str, Structure]]:
    """``(calculation id, structure)`` of the completed calculations made with ``settings``."""
    return [
        (status.calc_id, structure_from_json(read_calc(workdir, status.calc_id).structure))
        for status in calc_statuses(workdir)
        if status.status == COMPLETED and made_with(status.calc_id, settings)
    ]


def compute_phases(sets: list[CompetingSet], references: Path, config: DftStageConfig) -> None:
    """Compute the competing phases of ``sets`` not computed yet; one that fails is named by
    the candidates needing it, so the stage goes on."""
    references.mkdir(parents=True, exist_ok=True)
    try:
        compute(reference_candidates(sets), references, config)
    except (RuntimeError, TimeoutError) as err:
        log.error("competing phases not all computed: %s", err)


def run_cp2k_stage(
    candidates: Path,
    workdir: Path,
    config: DftStageConfig,
    screen: ScreenSettings,
    extra_references: Sequence[str | Path] = (),
    rule: StabilityRule | None = None,
    start_new: bool = True,
) -> Path:
    """Compute the candidates with CP2K, then their competing phases, and write the results.

    The results are the work directory's: every completed calculation in it is placed (its
    competing phases computed if they are not yet), this batch's and any earlier one's. The
    phases of candidates computed by earlier runs come first, so a long stage resumed and
    stopped again places what it had computed before it computes more.

    Parameters
    ----------
    candidates
        Records parquet (``id``, ``structure``) of the crystals to compute.
    workdir
        The DFT work directory of this batch.
    config
        The DFT stage (``cp2k`` settings, ``cp2k_run`` placement, earlier rounds' results).
    screen
        The MLIP screen whose hull chooses each candidate's competing phases.
    extra_references
        More reference sets of that hull (earlier rounds' discoveries).
    rule
        The stable / metastable thresholds.
    start_new
        ``False``: start no calculation (new candidates are registered, unsubmitted) and
        place what is computed so far (the rest keep their status; a candidate whose phases
        are not all computed is ``no_hull``, naming them). Only CP2K's data files are needed.

    Returns
    -------
    Path
        ``dft_results.parquet``.

    Raises
    ------
    Cp2kUnavailableError
        CP2K or its data files are not installed.
    """
    settings = config.cp2k
    if problem := cp2k_problem(settings, command_needed=start_new):
        raise Cp2kUnavailableError(problem)
    workdir = workdir.resolve()
    batch = with_basis_check(read_candidates(candidates), settings)
    references = config.cp2k_run.references.resolve()
    if start_new:  # earlier runs' candidates first: a run stopped again has placed them
        earlier = competing_sets(completed(workdir, settings), screen, extra_references)
        compute_phases(earlier, references, config)
        compute(batch, workdir, config)
    else:
        register_calculations(batch, workdir, settings, SubmitReport())
    done = completed(workdir, settings)
    competing: dict[str, list[ComputedEntry] | str] = {
        status.calc_id: OTHER_SETTINGS
        for status in calc_statuses(workdir)
        if not made_with(status.calc_id, settings)
    }
    sets = competing_sets(done, screen, extra_references)
    if start_new:
        compute_phases(sets, references, config)
    competing |= competing_entries(sets, references, settings)
    confirmed = earlier_entries(config.hull.earlier_results, settings)
    for calc_id, structure in done:
        if isinstance(found := competing[calc_id], list):
            elements = set(structure.composition.elements)
            found += [e for e in confirmed if set(e.composition.elements) <= elements]
    hull = config.hull.model_copy(
        update={
            "entries_file": None,
            "mp_cache_dir": None,
            "earlier_results": [],
            "correct_candidates": False,
            "correct_references": False,
        }
    )
    results = collect_results(workdir, hull, rule, competing)
    counts = dft_counts(results)
    write_results(workdir, results, {**counts, "energies": settings.label()})
    log.info("CP2K: %s", counts)
    return workdir / "dft_results.parquet"
