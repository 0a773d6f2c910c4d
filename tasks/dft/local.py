"""Running a DFT batch on this machine: the SLURM array's tasks as local processes.

:func:`run_batch_here` writes the same batch file a SLURM submission writes and runs its
tasks (``python -m tasks.dft.node BATCH INDEX``) as ``workers`` processes at a time, each
with its own OpenMP threads (one CP2K process per core by default), smallest cells first. A
task whose process dies without recording an outcome is recorded as failed with its exit
code and log, like a SLURM job that ended without a result, and the others go on. One
stopped from outside (Ctrl-C, ``kill``: SIGINT, SIGTERM or SIGHUP) is interrupted, not
failed: it keeps its status, so the next run of its stage computes it again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
from filelock import FileLock

from tasks.core.paths import REPO_ROOT
from tasks.core.records import structure_from_json
from tasks.dft.settings import CalcSettings, Cp2kSettings, cp2k_problem
from tasks.dft.submit import LOCAL_BATCH, failed_by_settings, write_batch
from tasks.dft.workdir import ACTIVE, FAILED, LOCK, read_calc, read_state, write_state

log = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
"""Signals a person or a scheduler stops a run with: the calculation was interrupted."""


def default_workers(settings: CalcSettings) -> int:
    """Processes at once: the machine's cores divided by each calculation's threads."""
    threads = settings.threads if isinstance(settings, Cp2kSettings) else 1
    return max(1, (os.cpu_count() or 1) // threads)


def _wait(process: subprocess.Popen[bytes], wall_time_s: float | None) -> int | None:
    """The process's exit code; ``None`` when it ran out of time and was stopped with every
    process under it (custodian's CP2K), which stay in this process group otherwise, so
    stopping the caller stops them too."""
    try:
        return process.wait(timeout=wall_time_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(process.pid)
            family = [*root.children(recursive=True), root]
            for member in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.terminate()
            _, alive = psutil.wait_procs(family, timeout=30)
            for member in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.kill()
        process.wait()
        return None


def smallest_first(workdir: Path, calc_ids: list[str]) -> list[str]:
    """The registered calculations ordered by the atoms in their cells, smallest first: a run
    stopped early has computed the most, and those likeliest to reach the wall time come
    last."""
    size = {c: len(structure_from_json(read_calc(workdir, c).structure)) for c in calc_ids}
    return sorted(calc_ids, key=size.__getitem__)


def run_batch_here(
    workdir: Path,
    calc_ids: list[str],
    attempts: dict[str, int],
    settings: CalcSettings,
    workers: int | None = None,
    wall_time_s: float | None = None,
) -> Path:
    """Run the calculations as local processes, smallest cells first
    (:func:`smallest_first`), and wait for all of them.

    Parameters
    ----------
    workdir
        The DFT work directory (the calculations are registered there).
    calc_ids, attempts
        The calculations and the attempt number of each.
    settings
        Their settings (one batch has one).
    workers
        Processes at once (default :func:`default_workers`).
    wall_time_s
        Stop a calculation (the node process and everything under it: custodian's CP2K)
        still running after this long and record it as failed with that reason.

    Returns
    -------
    Path
        The batch file.
    """
    calc_ids = smallest_first(workdir, calc_ids)
    batch_file = write_batch(workdir, calc_ids, attempts, settings, prefix=LOCAL_BATCH)
    threads = settings.threads if isinstance(settings, Cp2kSettings) else 1
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": "1"}

    def run(index: int) -> None:
        log_path = workdir / "logs" / f"{batch_file.stem}_{index}.out"
        try:
            with log_path.open("w") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "tasks.dft.node", str(batch_file), str(index)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=REPO_ROOT,
                    env=env,
                )
                code = _wait(process, wall_time_s)
            interrupted = code is not None and -code in STOP_SIGNALS
            if code is None:
                why = f"stopped after the wall time of {wall_time_s:.0f} s (cp2k_run.wall_time_s; "
            elif interrupted:
                why = f"interrupted by {signal.Signals(-code).name}, not failed ("
            else:
                why = f"local process exited with code {code} without a result ("
            why += f"log: {log_path})"
        except OSError as err:  # the process could not start: recorded, the others go on
            code, interrupted, why = -1, False, f"local process not started: {err}"
        state = read_state(workdir, calc_ids[index])
        if code != 0 and (state is None or state.status in ACTIVE):
            status = state.status if interrupted and state is not None else FAILED
            write_state(workdir, calc_ids[index], status, reason=why)

    with ThreadPoolExecutor(max_workers=workers or default_workers(settings)) as pool:
        list(pool.map(run, range(len(calc_ids))))
    log.info("ran %d calculations of %s here", len(calc_ids), batch_file.stem)
    return batch_file


def rerun_failed_here(
    workdir: Path, workers: int | None = None, wall_time_s: float | None = None
) -> dict[str, str]:
    """Run every failed CP2K calculation of ``workdir`` again here (next attempt, same
    settings), holding the directory's lock; the local counterpart of
    :func:`tasks.dft.submit.resubmit_failed`. VASP calculations are left to SLURM.

    Returns
    -------
    dict
        Calculation id -> its status after this attempt (or why it was not run).
    """
    workdir = workdir.resolve()
    outcome: dict[str, str] = {}
    with FileLock(workdir / LOCK):
        for settings, attempts in failed_by_settings(workdir):
            if not isinstance(settings, Cp2kSettings):
                outcome |= dict.fromkeys(attempts, "not rerun: VASP runs on SLURM")
                continue
            if problem := cp2k_problem(settings):
                outcome |= dict.fromkeys(attempts, f"not rerun: {problem}")
                continue
            run_batch_here(workdir, list(attempts), attempts, settings, workers, wall_time_s)
            for calc_id in attempts:
                state = read_state(workdir, calc_id)
                outcome[calc_id] = state.status if state is not None else FAILED
    return outcome
