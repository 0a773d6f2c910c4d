"""The DFT stage of the loop: run a candidate batch, wait, collect E_hull.

Two ways to run, one code path for collection:

- ``slurm``: submit an sbatch array to the cluster (:mod:`tasks.hpc`) and poll;
- ``standin``: run each calculation here, one after the other, with VASP replaced by the
  MLIP-driven test double ``tests/dft/vasp_standin.py``. Its numbers are MLIP numbers, never
  DFT: reports say so on their first line. The reference entries of its hull are the MLIP
  hull's reference energies, so the comparison stays self-consistent.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pandas as pd
from monty.json import MontyEncoder
from pymatgen.entries.computed_entries import ComputedEntry

from tasks import hpc
from tasks.atomic import write_text_atomic
from tasks.dft import Candidate, DftSettings, read_candidates
from tasks.dft_hull import collect_results, sun_summary, write_results
from tasks.hull import HullConfig as MLIPHullConfig
from tasks.mlip import MLIPConfig
from tasks.paths import REPO_ROOT
from tasks.pipeline_config import DftStageConfig
from tasks.records import structure_from_json
from tasks.relax import RelaxConfig

log = logging.getLogger(__name__)

#: The VASP test double (CHGNet inside); only for the ``standin`` mode and the tests.
VASP_STANDIN = REPO_ROOT / "tests" / "dft" / "vasp_standin.py"


def standin_command() -> str:
    """Command line that runs the VASP stand-in with this interpreter."""
    return f"{sys.executable} {VASP_STANDIN}"


def write_entries_file(entries: list[ComputedEntry], path: Path) -> Path:
    """Write reference entries as the JSON list :class:`tasks.dft_hull.HullConfig` reads."""
    return write_text_atomic(path, json.dumps([e.as_dict() for e in entries], cls=MontyEncoder))


def run_candidates_here(candidates: list[Candidate], workdir: Path, dft: DftSettings) -> None:
    """Run the new calculations one after the other in this process (no scheduler).

    Calculations already recorded in ``workdir`` are left as they are (idempotent by
    structure and settings hash, as with SLURM submission).
    """
    report = hpc.SubmitReport()
    new = hpc.register_calculations(candidates, workdir, dft, report)
    for calc_id in new:
        hpc.write_state(workdir, calc_id, hpc.SUBMITTED, reason="", attempt=1, batch="local")
        hpc.run_calculation(workdir, calc_id)
    log.info("ran %d calculations here, skipped %d", len(new), len(report.skipped))


def run_dft_stage(
    candidates: Path,
    workdir: Path,
    config: DftStageConfig,
    reference_entries: list[ComputedEntry] | None = None,
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

    Returns
    -------
    Path
        ``dft_results.parquet``.
    """
    workdir = workdir.resolve()
    dft, hull = config.dft, config.hull
    if config.mode == "standin":
        dft = dft.model_copy(update={"vasp_cmd": standin_command(), "potcar_spec": True})
    if reference_entries:
        entries_path = write_entries_file(reference_entries, workdir / "reference_entries.json")
        hull = hull.model_copy(update={"entries_file": entries_path, "correct_references": False})
    batch = read_candidates(candidates)
    if config.mode == "standin":
        run_candidates_here(batch, workdir, dft)
    else:
        hpc.submit_candidates(batch, workdir, dft, config.slurm)
        hpc.wait_for_batch(workdir, poll_s=config.poll_s, timeout_s=config.timeout_s)
    results = collect_results(workdir, hull)
    write_results(workdir, results, sun_summary(results))
    return workdir / "dft_results.parquet"


def mlip_reference_entries(
    candidates: Path,
    reference: Path,
    mlip: MLIPConfig,
    relax: RelaxConfig,
    hull_config: MLIPHullConfig,
) -> list[ComputedEntry]:
    """The MLIP hull's reference energies for the candidates' chemical systems, as entries.

    Used by the ``standin`` mode, whose energies come from the same MLIP.
    """
    from tasks.hull import MLIPHull, read_references

    frame = pd.read_parquet(candidates)
    systems = {
        frozenset(el.symbol for el in structure_from_json(s).composition.elements)
        for s in frame["structure"]
    }
    hull = MLIPHull(read_references(reference), mlip, relax, hull_config)
    hull.prepare(systems)
    entries: dict[str, ComputedEntry] = {}
    for system in systems:
        for entry in hull.entries(system):
            name = f"mlip-ref-{entry.name}-{entry.energy:.6f}"
            entries[name] = ComputedEntry(entry.composition, entry.energy, entry_id=name)
    return list(entries.values())
