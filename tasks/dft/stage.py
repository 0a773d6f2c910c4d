"""The DFT stage of the loop: run a candidate batch, wait, collect E_hull.

Two ways to run, one code path for collection:

- ``slurm``: submit an sbatch array to the cluster (:mod:`tasks.dft.submit`) and poll;
- ``standin``: run each calculation here, one after the other, with VASP replaced by the
  MLIP-driven test double :mod:`tasks.dft.standin`. Its numbers are MLIP numbers, never
  DFT: reports say so on their first line. Its energies are CHGNet's, already on the MP2020
  scale, so no MP2020 correction is applied to them, and the reference entries of its hull
  are the MLIP hull's reference energies, treated alike: a reference phase recomputed by
  the stand-in lands on its own hull.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from monty.json import MontyEncoder
from pymatgen.entries.computed_entries import ComputedEntry

from tasks.core.atomic import write_text_atomic
from tasks.core.records import structure_from_json
from tasks.core.stability import StabilityRule
from tasks.dft.collect import collect_results, dft_counts, write_results
from tasks.dft.node import run_calculation
from tasks.dft.settings import CalcSettings, DftSettings, DftStageConfig
from tasks.dft.submit import (
    SubmitReport,
    read_candidates,
    register_calculations,
    submit_candidates,
    wait_for_batch,
)
from tasks.dft.workdir import SUBMITTED, Candidate, write_state
from tasks.mlip.backends import load_mlip
from tasks.mlip.hull import MLIPHull, hull_references
from tasks.mlip.settings import ScreenSettings

log = logging.getLogger(__name__)


#: Custodian's polling interval for the stand-in, which finishes a calculation in seconds.
STANDIN_POLL_S = 0.25


def standin_command() -> str:
    """Command line that runs the VASP stand-in (:mod:`tasks.dft.standin`) here."""
    return f"{sys.executable} -m tasks.dft.standin"


def write_entries_file(entries: list[ComputedEntry], path: Path) -> Path:
    """Write reference entries as the JSON list :class:`tasks.dft.settings.DftHullConfig` reads."""
    return write_text_atomic(path, json.dumps([e.as_dict() for e in entries], cls=MontyEncoder))


def run_candidates_here(candidates: list[Candidate], workdir: Path, dft: DftSettings) -> None:
    """Run the new calculations one after the other in this process (no scheduler).

    Calculations already recorded in ``workdir`` are left as they are (idempotent by
    structure and settings hash, as with SLURM submission).
    """
    report = SubmitReport()
    new = register_calculations(candidates, workdir, dft, report)
    for calc_id in new:
        write_state(workdir, calc_id, SUBMITTED, reason="", attempt=1, batch="local")
        run_calculation(workdir, calc_id)
    log.info("ran %d calculations here, skipped %d", len(new), len(report.skipped))


def submit_and_wait(
    candidates: list[Candidate], workdir: Path, settings: CalcSettings, config: DftStageConfig
) -> None:
    """Submit the candidates not computed yet as one SLURM array and wait for all of them.

    Raises
    ------
    RuntimeError
        The batch could not be submitted (the message gives the first reason).
    """
    report = submit_candidates(candidates, workdir, settings, config.slurm)
    if report.failed:
        first = next(iter(report.failed.values()))
        raise RuntimeError(f"DFT batch of {len(report.failed)} not submitted: {first}")
    wait_for_batch(workdir, poll_s=config.poll_s, timeout_s=config.timeout_s)


def run_dft_stage(
    candidates: Path,
    workdir: Path,
    config: DftStageConfig,
    reference_entries: list[ComputedEntry] | None = None,
    rule: StabilityRule | None = None,
) -> Path:
    """Compute the candidates and write ``dft_results.parquet`` in ``workdir``.

    Parameters
    ----------
    candidates
        Records parquet (``id``, ``structure``) of the crystals to compute.
    workdir
        The DFT work directory (calculations, stores, results).
    config
        Mode, VASP settings, SLURM settings and hull references.
    reference_entries
        Extra reference entries (the stand-in passes the MLIP hull's references).
    rule
        The stable / metastable thresholds (shared with the MLIP hull).

    Returns
    -------
    Path
        ``dft_results.parquet``.

    Raises
    ------
    RuntimeError
        The batch could not be submitted, or every calculation sent failed.
    """
    workdir = workdir.resolve()
    dft, hull = config.dft, config.hull
    if config.mode == "standin":
        dft = dft.model_copy(
            update={"vasp_cmd": standin_command(), "potcar_spec": True, "poll_s": STANDIN_POLL_S}
        )
        hull = hull.model_copy(update={"correct_candidates": False})
    if reference_entries:
        entries_path = write_entries_file(reference_entries, workdir / "reference_entries.json")
        hull = hull.model_copy(update={"entries_file": entries_path, "correct_references": False})
    batch = read_candidates(candidates)
    if config.mode == "standin":
        run_candidates_here(batch, workdir, dft)
    else:
        submit_and_wait(batch, workdir, dft, config)
    results = collect_results(workdir, hull, rule)
    counts = dft_counts(results)
    write_results(workdir, results, {**counts, "energies": config.describe()})
    if counts["n_sent"] and not counts["n_checked"]:
        reasons = sorted({r.reason.splitlines()[0][:200] for r in results if r.reason})
        raise RuntimeError(
            f"all {counts['n_sent']} DFT calculations failed ({counts['status_counts']}): "
            + "; ".join(reasons[:3])
        )
    return workdir / "dft_results.parquet"


def mlip_reference_entries(
    candidates: Path, screen: ScreenSettings, extra_references: Sequence[str | Path] = ()
) -> list[ComputedEntry]:
    """The MLIP hull's reference energies for the candidates' chemical systems, as entries.

    Used by the ``standin`` mode, whose energies come from the same MLIP: the stand-in's
    hull is the MLIP hull, so a reference phase recomputed by the stand-in lands on it.
    """
    frame = pd.read_parquet(candidates)
    systems = {
        frozenset(el.symbol for el in structure_from_json(s).composition.elements)
        for s in frame["structure"]
    }
    backend = load_mlip(screen.mlip)
    references = hull_references(screen.hull, backend.version, extra_references)
    hull = MLIPHull(references, screen)
    hull.prepare(systems)
    entries: dict[str, ComputedEntry] = {}
    for system in systems:
        for entry in hull.entries(system):
            name = f"mlip-ref-{entry.name}-{entry.energy:.6f}"
            entries[name] = ComputedEntry(entry.composition, entry.energy, entry_id=name)
    return list(entries.values())
