"""What a compute node runs: one calculation of a batch (one SLURM array task).

This is the job script's entry point, ``python -m tasks.dft.node BATCH_FILE INDEX``: it
imports only the DFT wing (atomate2, jobflow), not the CLI and the other stages. The
candidate's atomate2 flow (VASP or CP2K, by the calculation's settings) runs through
``jobflow.run_locally`` and writes its job outputs
to the attempt's JSONStore; every outcome is recorded in the calculation's ``state.json``.
Sites with MongoDB can use jobflow-remote or FireWorks instead (same flows, a
``MongoStore`` as the ``JobStore``).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path

from jobflow import Flow, run_locally
from monty.io import zopen

from tasks.core.records import structure_from_json
from tasks.dft.cp2k import density_problem, make_cp2k_flow
from tasks.dft.makers import make_relax_flow
from tasks.dft.settings import CalcSettings, Cp2kSettings, calc_settings
from tasks.dft.workdir import (
    COMPLETED,
    FAILED,
    RUNNING,
    DftBatch,
    calc_dir,
    open_job_store,
    read_calc,
    read_state,
    write_state,
)

logger = logging.getLogger(__name__)


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
    state = read_state(workdir, calc_id)
    attempt = state.attempt if state is not None else 1
    slurm_id = "_".join(
        os.environ[k] for k in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID") if k in os.environ
    )
    write_state(workdir, calc_id, RUNNING, host=socket.gethostname(), slurm_id=slurm_id)
    settings = calc_settings(calc.settings)
    flow = make_flow(calc.structure, settings, calc.candidate_id)
    flow.update_metadata(
        {"calc_id": calc_id, "candidate_id": calc.candidate_id, "attempt": attempt}
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
        reason = f"{type(err).__name__}: {err}{_output_tail(run_root)}"
        logger.error("calculation %s failed: %s", calc_id, reason)
        write_state(workdir, calc_id, FAILED, reason=reason)
        return False
    finally:
        os.chdir(cwd)
    if isinstance(settings, Cp2kSettings) and (problem := _cp2k_problem(run_root)):
        logger.error("calculation %s failed: %s", calc_id, problem)
        write_state(workdir, calc_id, FAILED, reason=problem)
        return False
    write_state(workdir, calc_id, COMPLETED, reason="")
    logger.info("calculation %s completed", calc_id)
    return True


def make_flow(structure: str, settings: CalcSettings, name: str) -> Flow:
    """The calculation's atomate2 flow: CP2K's for CP2K settings, the MP VASP one otherwise.

    A CP2K calculation runs with ``settings.threads`` OpenMP threads and finds its basis
    and potential files through ``CP2K_DATA_DIR``.
    """
    crystal = structure_from_json(structure)
    if isinstance(settings, Cp2kSettings):
        os.environ["OMP_NUM_THREADS"] = str(settings.threads)
        os.environ.setdefault("CP2K_DATA_DIR", str(settings.data_dir))
        return make_cp2k_flow(crystal, settings, name)
    return make_relax_flow(crystal, settings, name)


def _cp2k_problem(run_root: Path) -> str:
    """Why the attempt's finished CP2K runs cannot be trusted (:func:`density_problem`)."""
    for output in sorted(run_root.glob("job_*/cp2k.out*")):
        if problem := density_problem(output):
            return problem
    return ""


def _output_tail(run_root: Path, n_lines: int = 3) -> str:
    """The last lines of the newest job's VASP or CP2K output, to explain a failure."""
    outs = sorted(
        [*run_root.glob("job_*/vasp.out*"), *run_root.glob("job_*/cp2k.out*")],
        key=lambda p: p.stat().st_mtime,
    )
    if not outs:
        return ""
    with zopen(outs[-1], "rt") as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return f"; {outs[-1].name}: " + " | ".join(lines[-n_lines:]) if lines else ""


def run_batch_task(batch_file: str | Path, index: int) -> bool:
    """Run the ``index``-th calculation of a batch (what each SLURM array task does)."""
    batch_file = Path(batch_file).resolve()
    batch = DftBatch.read(batch_file)
    return run_calculation(batch_file.parent.parent, batch.calc_ids[index])


def main(argv: list[str] | None = None) -> int:
    """``python -m tasks.dft.node BATCH_FILE INDEX``: exit 0 when the calculation completed."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m tasks.dft.node BATCH_FILE INDEX", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return 0 if run_batch_task(args[0], int(args[1])) else 1


if __name__ == "__main__":
    sys.exit(main())
