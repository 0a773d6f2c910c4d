"""Submitting DFT batches and following them: candidates in, calculation states out.

:func:`submit_candidates` registers each candidate's calculation in the work directory
(idempotent by structure and settings hash, see :mod:`tasks.dft.workdir`) and submits the
new ones as one SLURM array batch; :func:`calc_statuses` reconciles the recorded states
with the scheduler; :func:`resubmit_failed` starts the next attempt of failed ones. Each
array task runs :mod:`tasks.dft.node` on its compute node.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.atomic import write_json_atomic, write_text_atomic
from tasks.core.checks import structure_problem
from tasks.core.records import structure_to_json
from tasks.core.structure_io import read_structures
from tasks.dft.settings import CalcSettings, SlurmSettings, calc_settings, settings_hash
from tasks.dft.slurm import (
    SLURM_ACTIVE,
    render_sbatch,
    sbatch,
    scheduler_states,
    slurm_client_here,
)
from tasks.dft.workdir import (
    ACTIVE,
    FAILED,
    SUBMITTED,
    CalcInput,
    Candidate,
    DftBatch,
    calc_dir,
    calc_id_for,
    list_calcs,
    read_calc,
    read_rejected,
    read_state,
    write_calc,
    write_state,
)

logger = logging.getLogger(__name__)

#: Batch ids of batches run as local processes (:mod:`tasks.dft.local`) start so.
LOCAL_BATCH = "local-"
#: A registered calculation whose batch was never written (a crash in between).
UNSUBMITTED = "unsubmitted"
#: A batch whose sbatch call has not returned yet has no job id; give it this long.
_SUBMIT_GRACE_S = 120


@dataclass
class SubmitReport:
    """What a submission did: one new batch (or none), and every candidate's fate.

    ``failed`` holds calculations whose submission itself failed (``sbatch`` missing or
    refusing): callers must treat a non-empty ``failed`` as an error.
    """

    batch_id: str | None = None
    job_id: str | None = None
    submitted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


@dataclass
class CalcStatus:
    """The state of one calculation, reconciled with the scheduler."""

    calc_id: str
    candidate_id: str
    formula: str
    status: str
    reason: str = ""
    attempt: int = 0
    scheduler_id: str = ""
    scheduler_state: str = ""


def read_candidates(path: str | Path, limit: int | None = None) -> list[Candidate]:
    """DFT candidates from any structure set, checked by the structural sanity rule.

    Parameters
    ----------
    path
        Anything :func:`tasks.core.structure_io.read_entries` reads (records parquet, CSV
        with ``cif``, CIF file or folder, extxyz).
    limit
        Keep only the first ``limit`` entries.

    Returns
    -------
    list[Candidate]
        One per input entry; unreadable or physically bad inputs have ``structure=None``
        and the reason.
    """
    out = []
    for ident, structure, reason in read_structures(path, limit=limit):
        if structure is not None and (problem := structure_problem(structure)):
            structure, reason = None, problem
        out.append(Candidate(ident, structure, reason))
    return out


def write_batch(
    workdir: Path,
    calc_ids: list[str],
    attempts: dict[str, int],
    dft: CalcSettings,
    prefix: str = "",
) -> Path:
    """Write a batch file (task ``i`` runs ``calc_ids[i]``) and mark its calculations
    submitted; return the file (``batches/<prefix><batch id>.json``, logs go to ``logs/``).
    A batch run on this machine has the prefix :data:`LOCAL_BATCH` (SLURM knows nothing of
    it)."""
    batch_id = f"{prefix}{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    batch_file = workdir / "batches" / f"{batch_id}.json"
    DftBatch(batch_id=batch_id, calc_ids=calc_ids, settings=dft).write(batch_file)
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    for index, cid in enumerate(calc_ids):
        write_state(
            workdir, cid, SUBMITTED, reason="", attempt=attempts[cid], batch=batch_id, index=index
        )
    return batch_file


def _submit_batch(
    workdir: Path,
    calc_ids: list[str],
    attempts: dict[str, int],
    dft: CalcSettings,
    slurm: SlurmSettings,
    report: SubmitReport,
) -> None:
    batch_file = write_batch(workdir, calc_ids, attempts, dft)
    batch_id = batch_file.stem
    script = batch_file.with_suffix(".sbatch")
    write_text_atomic(
        script, render_sbatch(batch_file, len(calc_ids), dft, slurm, f"dft-{batch_id}")
    )
    try:
        job_id = sbatch(script)
    except (RuntimeError, OSError) as err:
        for cid in calc_ids:
            write_state(workdir, cid, FAILED, reason=f"submission failed: {err}")
        report.failed.update({cid: f"submission failed: {err}" for cid in calc_ids})
        logger.error("batch %s not submitted: %s", batch_id, err)
        return
    write_text_atomic(batch_file.with_suffix(".jobid"), job_id + "\n")
    report.batch_id, report.job_id, report.submitted = batch_id, job_id, list(calc_ids)
    logger.info("batch %s: %d calculations, SLURM job %s", batch_id, len(calc_ids), job_id)


def register_calculations(
    candidates: list[Candidate], workdir: Path, dft: CalcSettings, report: SubmitReport
) -> list[str]:
    """Create the calculation folders of the candidates not computed yet; return their ids.

    Idempotent by structure and settings hash: candidates already known to ``workdir`` are
    listed in ``report.skipped``; unreadable ones, and another candidate with the very same
    structure (it would be the same calculation), in ``report.rejected`` (and
    ``rejected.json``, so each has its row with the reason). A calculation registered
    earlier but never submitted is returned again.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shash = settings_hash(dft)
    new: list[str] = []
    owners: dict[str, str] = {}
    for cand in candidates:
        if cand.structure is None:
            report.rejected[cand.id] = cand.reason or "no structure"
            continue
        cid = calc_id_for(cand, dft)
        state = read_state(workdir, cid)
        known = (calc_dir(workdir, cid) / "calc.json").exists()
        owner = owners.get(cid) or (read_calc(workdir, cid).candidate_id if known else cand.id)
        if owner != cand.id:
            report.rejected[cand.id] = (
                f"the same structure as candidate {owner}: its calculation {cid} is that row"
            )
            continue
        owners[cid] = owner
        if cid in new:
            continue
        if state is not None:
            report.skipped[cid] = f"already {state.status} (calculation {cid})"
            continue
        new.append(cid)
        if known:  # registered, never started: calc.json is written once
            continue
        write_calc(
            workdir,
            CalcInput(
                calc_id=cid,
                candidate_id=cand.id,
                formula=cand.structure.composition.reduced_formula,
                structure_hash=cid.split("-")[0],
                settings_hash=shash,
                structure=structure_to_json(cand.structure),
                settings=dft.model_dump(mode="json"),
            ),
        )
    rejected = read_rejected(workdir) | report.rejected
    if rejected or (workdir / "rejected.json").exists():  # an owner now has its own row
        owning = set(owners.values())
        write_json_atomic(
            workdir / "rejected.json", {k: v for k, v in rejected.items() if k not in owning}
        )
    return new


def submit_candidates(
    candidates: list[Candidate], workdir: str | Path, dft: CalcSettings, slurm: SlurmSettings
) -> SubmitReport:
    """Submit candidates as one SLURM array batch, skipping those already computed.

    Parameters
    ----------
    candidates
        Crystals to compute; those with ``structure=None`` are recorded as rejected.
    workdir
        The DFT work directory (must be visible from the compute nodes).
    dft, slurm
        Calculation and submission settings.

    Returns
    -------
    SubmitReport
        The batch submitted (if any), the calculations skipped (already submitted, running,
        completed or failed: use :func:`resubmit_failed`), the rejected inputs and the
        calculations whose submission failed.
    """
    workdir = Path(workdir).resolve()
    report = SubmitReport()
    new = register_calculations(candidates, workdir, dft, report)
    if new:
        _submit_batch(workdir, new, dict.fromkeys(new, 1), dft, slurm, report)
    return report


def failed_by_settings(workdir: Path) -> list[tuple[CalcSettings, dict[str, int]]]:
    """The failed calculations grouped by their settings, each with its next attempt number
    (one batch per group: a batch has one set of settings)."""
    groups: dict[str, dict[str, int]] = {}
    for status in calc_statuses(workdir):
        if status.status == FAILED:
            key = read_calc(workdir, status.calc_id).settings_hash
            groups.setdefault(key, {})[status.calc_id] = status.attempt + 1
    return [
        (calc_settings(read_calc(workdir, next(iter(attempts))).settings), attempts)
        for attempts in groups.values()
    ]


def resubmit_failed(workdir: str | Path, slurm: SlurmSettings) -> list[SubmitReport]:
    """Submit every failed calculation again (next attempt, same settings).

    Returns
    -------
    list of SubmitReport
        One per batch: one batch per set of settings among the failed calculations.
    """
    workdir = Path(workdir).resolve()
    reports = []
    for dft, attempts in failed_by_settings(workdir):
        report = SubmitReport()
        _submit_batch(workdir, list(attempts), attempts, dft, slurm, report)
        reports.append(report)
    return reports


def _job_id(workdir: Path, batch_id: str) -> str:
    path = workdir / "batches" / f"{batch_id}.jobid"
    return path.read_text().strip() if path.exists() else ""


def calc_statuses(workdir: str | Path) -> list[CalcStatus]:
    """The status of every calculation, reconciled with SLURM.

    A calculation the scheduler has finished (or forgotten) without the job writing a
    result is recorded as failed with the scheduler's state as the reason (walltime, node
    failure, cancellation...), so it can be resubmitted. On a machine without a SLURM client
    nothing is reconciled: its submitted and running calculations keep their status.
    """
    workdir = Path(workdir).resolve()
    calc_ids = list_calcs(workdir)
    states = {cid: read_state(workdir, cid) for cid in calc_ids}
    job_ids = {
        jid
        for st in states.values()
        if st is not None and st.status in ACTIVE
        if (jid := _job_id(workdir, st.batch))
    }
    reconcile = not job_ids or slurm_client_here()
    sched = scheduler_states(job_ids) if reconcile else {}
    out = []
    for cid in calc_ids:
        calc, state = read_calc(workdir, cid), states[cid]
        if state is None:
            out.append(CalcStatus(cid, calc.candidate_id, calc.formula, UNSUBMITTED))
            continue
        jid = _job_id(workdir, state.batch)
        sid = f"{jid}_{state.index}" if jid else ""
        sstate = sched.get(sid, "")
        just_submitted = not jid and time.time() - state.updated < _SUBMIT_GRACE_S
        local = state.batch.startswith(LOCAL_BATCH)  # its runner records the outcome
        if (
            state.status in ACTIVE
            and sstate not in SLURM_ACTIVE
            and not just_submitted
            and not local
            and reconcile
        ):
            fresh = read_state(workdir, cid)  # the job may have finished meanwhile
            if fresh is not None and fresh.status in ACTIVE:
                why = (
                    f"SLURM job {sid} ended ({sstate}) without a result"
                    if sstate
                    else f"SLURM job {sid or '?'} is unknown to the scheduler and wrote no result"
                )
                fresh = write_state(workdir, cid, FAILED, reason=why)
            state = fresh or state
        out.append(
            CalcStatus(
                calc_id=cid,
                candidate_id=calc.candidate_id,
                formula=calc.formula,
                status=state.status,
                reason=state.reason,
                attempt=state.attempt,
                scheduler_id=sid,
                scheduler_state=sstate,
            )
        )
    return out


def wait_for_batch(
    workdir: str | Path, poll_s: float = 10.0, timeout_s: float | None = None
) -> list[CalcStatus]:
    """Poll :func:`calc_statuses` until no calculation is submitted or running."""
    start = time.monotonic()
    while True:
        statuses = calc_statuses(workdir)
        active = [s for s in statuses if s.status in ACTIVE]
        if not active:
            return statuses
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{len(active)} calculations still active after {timeout_s} s")
        time.sleep(poll_s)


def status_summary(statuses: list[CalcStatus]) -> dict[str, int]:
    """Counts per status."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.status] = counts.get(s.status, 0) + 1
    return counts


def statuses_as_dicts(statuses: list[CalcStatus]) -> list[dict[str, Any]]:
    """Plain dicts (for JSON output)."""
    return [asdict(s) for s in statuses]
