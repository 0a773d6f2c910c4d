"""SLURM: render a batch's job script, submit it, and ask the scheduler how its tasks are.

The scheduler is asked through ``sacct``, ``scontrol`` and ``squeue`` (later, more current
sources win); a missing command answers nothing, so the same code runs where SLURM is
absent (the local stand-in) and tasks the scheduler forgot are judged by the work directory.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template

from tasks.core.paths import REPO_ROOT
from tasks.dft.settings import CalcSettings, SlurmSettings

logger = logging.getLogger(__name__)

#: SLURM job states after which a task that wrote no result has failed.
SLURM_ACTIVE = frozenset(
    {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "RESIZING", "SUSPENDED"}
)


class SbatchNotFoundError(RuntimeError):
    """``sbatch`` is not on this machine's PATH."""


def render_sbatch(
    batch_file: Path, n_tasks: int, dft: CalcSettings, slurm: SlurmSettings, job_name: str
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
    """Submit a job script with ``sbatch --parsable``; return the job id.

    Raises
    ------
    SbatchNotFoundError
        ``sbatch`` is not installed here.
    RuntimeError
        ``sbatch`` refused the script (its message is included).
    """
    try:
        proc = subprocess.run(
            ["sbatch", "--parsable", str(script)], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise SbatchNotFoundError(
            "sbatch not found: SLURM is not installed on this machine"
        ) from None
    if proc.returncode != 0:
        raise RuntimeError(f"sbatch failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip().split(";")[0]


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


def slurm_client_here() -> bool:
    """Whether this machine can ask SLURM at all (one of its query commands is on PATH)."""
    return any(shutil.which(command) for command in ("sacct", "scontrol", "squeue"))


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
