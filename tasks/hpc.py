"""SLURM submission, tracking and node-side execution of DFT batches.

A DFT work directory (on a filesystem shared by the login and the compute nodes) holds::

    config.json                      last stage configuration used to submit
    rejected.json                    candidates whose input was bad (never submitted)
    calcs/<calc_id>/calc.json        candidate id, structure, settings (written once)
    calcs/<calc_id>/state.json       submitted | running | completed | failed, with reason
    calcs/<calc_id>/attempt-<n>/     jobflow run directories of attempt n
    store/<calc_id>-<n>.json         maggma JSONStore of attempt n (jobflow job outputs)
    store/<calc_id>-<n>.data.json    its "data" additional store (large VASP objects)
    batches/<batch_id>.json          array order of the batch's calc ids
    batches/<batch_id>.sbatch        the rendered job script; .jobid: SLURM job id
    logs/<jobid>_<index>.out         job output

``calc_id`` is ``<structure hash>-<settings hash>``: submitting the same crystal with the
same settings again finds the existing calculation instead of starting a second one. Each
calculation writes its own store file, so concurrent array tasks never write the same file.

Each array task runs :func:`run_batch_task` (``discovery dft run-task``) on its node:
the candidate's atomate2 flow through ``jobflow.run_locally``. Sites with MongoDB can use
jobflow-remote or FireWorks instead (same flows, a ``MongoStore`` as the ``JobStore``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from jobflow import JobStore, run_locally
from maggma.stores import JSONStore
from monty.io import zopen
from pydantic import Field

from tasks.atomic import write_json_atomic
from tasks.config import StrictModel
from tasks.dft import Candidate, DftSettings, make_relax_flow, settings_hash
from tasks.paths import REPO_ROOT
from tasks.records import structure_from_json, structure_hash, structure_to_json

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = REPO_ROOT / "infra" / "slurm" / "dft_array.sbatch"

SUBMITTED = "submitted"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
ACTIVE = frozenset({SUBMITTED, RUNNING})

#: SLURM job states after which a task that wrote no result has failed.
_SLURM_ACTIVE = frozenset(
    {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
)
_REASON_LIMIT = 2000
#: A batch whose sbatch call has not returned yet has no job id; give it this long.
_SUBMIT_GRACE_S = 120


class SlurmSettings(StrictModel):
    """How a batch is submitted to SLURM (rendered into ``infra/slurm/dft_array.sbatch``).

    Attributes
    ----------
    partition, account, qos
        Passed as ``#SBATCH`` directives when set.
    walltime
        Per-candidate time limit (``HH:MM:SS``).
    cpus_per_task, mem
        Resources per MPI rank / per node (``mem`` e.g. ``"32G"``).
    max_parallel
        Run at most this many array tasks at once (``--array=...%N``).
    extra_directives
        More ``#SBATCH`` lines, without the prefix (``["--constraint=skylake"]``).
    setup_commands
        Shell lines run before the flow (``module load vasp/6.4``).
    environment
        Variables exported in the job (e.g. ``PMG_VASP_PSP_DIR``).
    python
        Interpreter on the compute nodes; default: the one submitting.
    template
        The sbatch template.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    walltime: str = Field(default="24:00:00", pattern=r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
    cpus_per_task: int = Field(default=1, gt=0)
    mem: str | None = None
    max_parallel: int | None = Field(default=None, gt=0)
    extra_directives: list[str] = Field(default_factory=list)
    setup_commands: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    python: str | None = None
    template: Path = DEFAULT_TEMPLATE


@dataclass
class SubmitReport:
    """What a submission did: one new batch (or none) and why other candidates were skipped."""

    batch_id: str | None = None
    job_id: str | None = None
    submitted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


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


# --- work directory ---------------------------------------------------------------------


def calc_dir(workdir: Path, calc_id: str) -> Path:
    """Directory of one calculation."""
    return Path(workdir) / "calcs" / calc_id


def store_paths(workdir: Path, calc_id: str, attempt: int) -> tuple[Path, Path]:
    """The JSONStore files (documents, data) of one attempt of a calculation."""
    base = Path(workdir) / "store" / f"{calc_id}-{attempt}"
    return base.with_suffix(".json"), base.with_suffix(".data.json")


def open_job_store(workdir: Path, calc_id: str, attempt: int, read_only: bool) -> JobStore:
    """The jobflow ``JobStore`` (maggma ``JSONStore`` files) of one attempt."""
    docs, data = store_paths(workdir, calc_id, attempt)
    docs.parent.mkdir(parents=True, exist_ok=True)
    return JobStore(
        JSONStore(str(docs), read_only=read_only, key="uuid"),
        additional_stores={"data": JSONStore(str(data), read_only=read_only, key="blob_uuid")},
    )


def read_calc(workdir: Path, calc_id: str) -> dict[str, Any]:
    """The immutable description of a calculation (``calc.json``)."""
    return json.loads((calc_dir(workdir, calc_id) / "calc.json").read_text())


def read_state(workdir: Path, calc_id: str) -> dict[str, Any]:
    """The mutable state of a calculation (``state.json``)."""
    path = calc_dir(workdir, calc_id) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_state(workdir: Path, calc_id: str, status: str, **fields: Any) -> dict[str, Any]:
    """Atomically replace a calculation's state, keeping fields not given."""
    state = read_state(workdir, calc_id) | fields | {"status": status, "updated": time.time()}
    if "reason" in state:
        state["reason"] = str(state["reason"])[-_REASON_LIMIT:]
    write_json_atomic(calc_dir(workdir, calc_id) / "state.json", state)
    return state


def list_calcs(workdir: Path) -> list[str]:
    """Ids of all calculations in a work directory."""
    root = Path(workdir) / "calcs"
    return sorted(p.parent.name for p in root.glob("*/calc.json")) if root.exists() else []


def calc_id_for(candidate: Candidate, settings: DftSettings) -> str:
    """``<structure hash>-<settings hash>``: the idempotency key of a calculation."""
    if candidate.structure is None:
        raise ValueError(f"candidate {candidate.id} has no structure: {candidate.reason}")
    return f"{structure_hash(candidate.structure)}-{settings_hash(settings)}"


# --- submission --------------------------------------------------------------------------


def render_sbatch(
    batch_file: Path, n_tasks: int, dft: DftSettings, slurm: SlurmSettings, job_name: str
) -> str:
    """Render the sbatch array script of a batch from the template."""
    directives = [
        f"#SBATCH --{key}={value}"
        for key, value in (
            ("partition", slurm.partition),
            ("account", slurm.account),
            ("qos", slurm.qos),
            ("mem", slurm.mem),
        )
        if value
    ] + [f"#SBATCH {d}" for d in slurm.extra_directives]
    environment = [f"export {k}={shlex.quote(v)}" for k, v in slurm.environment.items()]
    workdir = batch_file.parent.parent
    return Template(slurm.template.read_text()).substitute(
        job_name=job_name,
        last_index=n_tasks - 1,
        max_parallel=f"%{slurm.max_parallel}" if slurm.max_parallel else "",
        log_dir=shlex.quote(str(workdir / "logs")),
        walltime=slurm.walltime,
        ntasks=dft.cores,
        cpus_per_task=slurm.cpus_per_task,
        directives="\n".join(directives),
        setup_commands="\n".join(slurm.setup_commands),
        environment="\n".join(environment),
        repo_root=shlex.quote(str(REPO_ROOT)),
        python=shlex.quote(slurm.python or sys.executable),
        batch_file=shlex.quote(str(batch_file)),
    )


def sbatch(script: Path) -> str:
    """Submit a job script with ``sbatch --parsable``; return the job id."""
    proc = subprocess.run(
        ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


def _submit_batch(
    workdir: Path,
    calc_ids: list[str],
    attempts: dict[str, int],
    dft: DftSettings,
    slurm: SlurmSettings,
    report: SubmitReport,
) -> None:
    batch_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
    batch_file = workdir / "batches" / f"{batch_id}.json"
    write_json_atomic(
        batch_file,
        {"batch_id": batch_id, "calc_ids": calc_ids, "settings": dft.model_dump(mode="json")},
    )
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    script = batch_file.with_suffix(".sbatch")
    script.write_text(render_sbatch(batch_file, len(calc_ids), dft, slurm, f"dft-{batch_id}"))
    for index, cid in enumerate(calc_ids):
        write_state(
            workdir, cid, SUBMITTED, reason="", attempt=attempts[cid], batch=batch_id, index=index
        )
    try:
        job_id = sbatch(script)
    except (RuntimeError, OSError) as err:
        for cid in calc_ids:
            write_state(workdir, cid, FAILED, reason=f"submission failed: {err}")
        report.skipped.update({cid: f"submission failed: {err}" for cid in calc_ids})
        logger.error("batch %s not submitted: %s", batch_id, err)
        return
    batch_file.with_suffix(".jobid").write_text(job_id + "\n")
    report.batch_id, report.job_id, report.submitted = batch_id, job_id, list(calc_ids)
    logger.info("batch %s: %d calculations, SLURM job %s", batch_id, len(calc_ids), job_id)


def register_calculations(
    candidates: list[Candidate], workdir: Path, dft: DftSettings, report: SubmitReport
) -> list[str]:
    """Create the calculation folders of the candidates not computed yet; return their ids.

    Idempotent by structure and settings hash: candidates already known to ``workdir`` are
    listed in ``report.skipped``, unreadable ones in ``report.rejected`` (and
    ``rejected.json``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    shash = settings_hash(dft)
    new: list[str] = []
    for cand in candidates:
        if cand.structure is None:
            report.rejected[cand.id] = cand.reason or "no structure"
            continue
        cid = calc_id_for(cand, dft)
        if cid in new:
            report.skipped[cid] = f"duplicate of another candidate in this submission ({cand.id})"
            continue
        state = read_state(workdir, cid)
        if state:
            report.skipped[cid] = f"already {state['status']} (calculation {cid})"
            continue
        write_json_atomic(
            calc_dir(workdir, cid) / "calc.json",
            {
                "calc_id": cid,
                "candidate_id": cand.id,
                "formula": cand.structure.composition.reduced_formula,
                "structure_hash": cid.split("-")[0],
                "settings_hash": shash,
                "structure": structure_to_json(cand.structure),
                "settings": dft.model_dump(mode="json"),
            },
        )
        new.append(cid)
    if report.rejected:
        rejected_file = workdir / "rejected.json"
        previous = json.loads(rejected_file.read_text()) if rejected_file.exists() else {}
        write_json_atomic(rejected_file, previous | report.rejected)
    return new


def submit_candidates(
    candidates: list[Candidate], workdir: str | Path, dft: DftSettings, slurm: SlurmSettings
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
        completed or failed: use :func:`resubmit_failed`) and the rejected inputs.
    """
    workdir = Path(workdir).resolve()
    report = SubmitReport()
    new = register_calculations(candidates, workdir, dft, report)
    if new:
        _submit_batch(workdir, new, dict.fromkeys(new, 1), dft, slurm, report)
    return report


def resubmit_failed(workdir: str | Path, slurm: SlurmSettings) -> SubmitReport:
    """Submit every failed calculation again (next attempt, same settings) as one batch."""
    workdir = Path(workdir).resolve()
    report = SubmitReport()
    failed = [s for s in calc_statuses(workdir) if s.status == FAILED]
    by_settings: dict[str, list[CalcStatus]] = {}
    for status in failed:
        by_settings.setdefault(read_calc(workdir, status.calc_id)["settings_hash"], []).append(
            status
        )
    for group in by_settings.values():
        dft = DftSettings.model_validate(read_calc(workdir, group[0].calc_id)["settings"])
        ids = [s.calc_id for s in group]
        sub = SubmitReport()
        _submit_batch(workdir, ids, {s.calc_id: s.attempt + 1 for s in group}, dft, slurm, sub)
        report.batch_id, report.job_id = (
            sub.batch_id or report.batch_id,
            sub.job_id or report.job_id,
        )
        report.submitted += sub.submitted
        report.skipped |= sub.skipped
    return report


# --- scheduler queries -------------------------------------------------------------------


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.debug("%s unavailable: %s", cmd[0], err)
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _expand_task_ids(spec: str) -> list[str]:
    """``"0-3,7%2"`` → ``["0", "1", "2", "3", "7"]`` (SLURM array task id syntax)."""
    ids: list[str] = []
    for part in spec.split("%")[0].strip("[]").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            ids += [str(i) for i in range(int(lo), int(hi) + 1)]
        elif part:
            ids.append(part)
    return ids


def parse_squeue(text: str) -> dict[str, str]:
    """Parse ``squeue -h -r -o '%i|%T'`` into ``{"<job>_<task>": STATE}``."""
    states = {}
    for line in text.splitlines():
        if "|" in line:
            job, state = line.strip().split("|", 1)
            states[job] = state.strip()
    return states


def parse_scontrol(text: str) -> dict[str, str]:
    """Parse ``scontrol -o show job`` records into ``{"<job>_<task>": STATE}``."""
    states = {}
    for line in text.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "ArrayJobId" in fields and "ArrayTaskId" in fields:
            for task in _expand_task_ids(fields["ArrayTaskId"]):
                states[f"{fields['ArrayJobId']}_{task}"] = fields.get("JobState", "")
        elif "JobId" in fields:
            states[fields["JobId"]] = fields.get("JobState", "")
    return states


def parse_sacct(text: str) -> dict[str, str]:
    """Parse ``sacct -n -P -X -o JobID,State`` into ``{"<job>_<task>": STATE}``."""
    states = {}
    for line in text.splitlines():
        if "|" in line:
            job, state = line.strip().split("|", 1)
            if "[" in job:
                base, spec = job.split("_", 1)
                for task in _expand_task_ids(spec):
                    states[f"{base}_{task}"] = state.split()[0]
            else:
                states[job] = state.split()[0]
    return states


def scheduler_states(job_ids: set[str]) -> dict[str, str]:
    """SLURM states of all array tasks of the given jobs (squeue, then scontrol, then sacct).

    Tasks the scheduler has forgotten (after ``MinJobAge`` without accounting) are absent.
    """
    states: dict[str, str] = {}
    if not job_ids:
        return states
    ids = ",".join(sorted(job_ids))
    for text, parser in (
        (_run(["sacct", "-n", "-P", "-X", "-j", ids, "-o", "JobID,State"]), parse_sacct),
        (_run(["scontrol", "-o", "show", "job", ids]), parse_scontrol),
        (_run(["squeue", "-h", "-r", "-j", ids, "-o", "%i|%T"]), parse_squeue),
    ):
        states |= parser(text)  # later (more current) sources win
    return states


def _job_id(workdir: Path, batch_id: str) -> str:
    path = workdir / "batches" / f"{batch_id}.jobid"
    return path.read_text().strip() if path.exists() else ""


def calc_statuses(workdir: str | Path) -> list[CalcStatus]:
    """The status of every calculation, reconciled with SLURM.

    A calculation the scheduler has finished (or forgotten) without the job writing a
    result is recorded as failed with the scheduler's state as the reason (walltime, node
    failure, cancellation...), so it can be resubmitted.
    """
    workdir = Path(workdir).resolve()
    calc_ids = list_calcs(workdir)
    states = {cid: read_state(workdir, cid) for cid in calc_ids}
    job_ids = {
        jid
        for st in states.values()
        if st.get("status") in ACTIVE
        if (jid := _job_id(workdir, st.get("batch", "")))
    }
    sched = scheduler_states(job_ids)
    out = []
    for cid in calc_ids:
        calc, state = read_calc(workdir, cid), states[cid]
        status = state.get("status", "")
        jid = _job_id(workdir, state.get("batch", ""))
        sid = f"{jid}_{state.get('index', 0)}" if jid else ""
        sstate = sched.get(sid, "")
        just_submitted = not jid and time.time() - state.get("updated", 0) < _SUBMIT_GRACE_S
        if status in ACTIVE and sstate not in _SLURM_ACTIVE and not just_submitted:
            state = read_state(workdir, cid)  # the job may have finished meanwhile
            if state.get("status") in ACTIVE:
                why = (
                    f"SLURM job {sid} ended ({sstate}) without a result"
                    if sstate
                    else f"SLURM job {sid or '?'} is unknown to the scheduler and wrote no result"
                )
                state = write_state(workdir, cid, FAILED, reason=why)
            status = state["status"]
        out.append(
            CalcStatus(
                calc_id=cid,
                candidate_id=calc["candidate_id"],
                formula=calc["formula"],
                status=status,
                reason=state.get("reason", ""),
                attempt=int(state.get("attempt", 0)),
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


# --- node side ---------------------------------------------------------------------------


def run_calculation(workdir: str | Path, calc_id: str) -> bool:
    """Run one calculation's atomate2 flow here (on a compute node) and record the outcome.

    The flow runs with ``jobflow.run_locally`` in ``calcs/<id>/attempt-<n>/`` and writes its
    job outputs to the attempt's JSONStore. Any exception (custodian giving up, VASP
    crashing, unconverged runs) is recorded as the failure reason.

    Returns
    -------
    bool
        Whether the calculation completed.
    """
    workdir = Path(workdir).resolve()
    calc = read_calc(workdir, calc_id)
    attempt = int(read_state(workdir, calc_id).get("attempt", 1))
    slurm_id = "_".join(
        os.environ[k] for k in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID") if k in os.environ
    )
    write_state(workdir, calc_id, RUNNING, host=socket.gethostname(), slurm_id=slurm_id)
    settings = DftSettings.model_validate(calc["settings"])
    flow = make_relax_flow(structure_from_json(calc["structure"]), settings, calc["candidate_id"])
    flow.update_metadata(
        {"calc_id": calc_id, "candidate_id": calc["candidate_id"], "attempt": attempt}
    )
    run_root = calc_dir(workdir, calc_id) / f"attempt-{attempt}"
    run_root.mkdir(parents=True, exist_ok=True)
    store = open_job_store(workdir, calc_id, attempt, read_only=False)
    cwd = Path.cwd()
    try:
        run_locally(
            flow,
            store=store,
            root_dir=run_root,
            create_folders=True,
            ensure_success=True,
            raise_immediately=True,
        )
    except Exception as err:  # recorded, never propagated: the other candidates go on
        reason = f"{type(err).__name__}: {err}{_vasp_output_tail(run_root)}"
        logger.error("calculation %s failed: %s", calc_id, reason)
        write_state(workdir, calc_id, FAILED, reason=reason)
        return False
    finally:
        os.chdir(cwd)
    write_state(workdir, calc_id, COMPLETED, reason="")
    logger.info("calculation %s completed", calc_id)
    return True


def _vasp_output_tail(run_root: Path, n_lines: int = 3) -> str:
    """The last lines of the newest job's VASP stdout, to explain a failure."""
    outs = sorted(run_root.glob("job_*/vasp.out*"), key=lambda p: p.stat().st_mtime)
    if not outs:
        return ""
    with zopen(outs[-1], "rt") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return "; vasp.out: " + " | ".join(lines[-n_lines:]) if lines else ""


def run_batch_task(batch_file: str | Path, index: int) -> bool:
    """Run the ``index``-th calculation of a batch (what each SLURM array task does)."""
    batch_file = Path(batch_file).resolve()
    batch = json.loads(batch_file.read_text())
    return run_calculation(batch_file.parent.parent, batch["calc_ids"][index])


def load_outputs(workdir: str | Path, calc_id: str, attempt: int) -> list[dict[str, Any]]:
    """Job documents of one attempt, newest first (each ``output`` is a TaskDoc dict)."""
    docs, _ = store_paths(Path(workdir), calc_id, attempt)
    if not docs.exists():
        return []
    store = JSONStore(str(docs), read_only=True, key="uuid")
    store.connect()
    try:
        found = list(store.query({"metadata.calc_id": calc_id}))
    finally:
        store.close()
    return sorted(found, key=lambda d: str(d.get("completed_at", "")), reverse=True)


def statuses_as_dicts(statuses: list[CalcStatus]) -> list[dict[str, Any]]:
    """Plain dicts (for JSON output)."""
    return [asdict(s) for s in statuses]
