"""Prefect flow ``dft-batch``: submit candidates to SLURM, wait, collect the DFT hull.

A thin wrapper: the work happens in :mod:`tasks.hpc` (submission, tracking) and
:mod:`tasks.dft_hull` (collection, E_hull, S.U.N.). Waiting is plain polling of the shared
work directory, so the flow can run on a login node and be restarted at any point:
resubmitting finds the existing calculations (idempotent by structure and settings hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from tasks import hpc
from tasks.dft import read_candidates
from tasks.dft_hull import collect_results, sun_summary, write_results
from tasks.pipeline_config import DftStageConfig


@task(name="dft-submit")
def submit_task(
    candidates_path: Path, workdir: Path, config: DftStageConfig, limit: int | None
) -> hpc.SubmitReport:
    """Read the candidates and submit the new ones as a SLURM array batch."""
    candidates = read_candidates(candidates_path, limit=limit)
    return hpc.submit_candidates(candidates, workdir, config.dft, config.slurm)


@task(name="dft-wait")
def wait_task(workdir: Path, poll_s: float, timeout_s: float | None) -> dict[str, int]:
    """Poll until no calculation is queued or running; return counts per status."""
    return hpc.status_summary(hpc.wait_for_batch(workdir, poll_s=poll_s, timeout_s=timeout_s))


@task(name="dft-collect")
def collect_task(workdir: Path, config: DftStageConfig, vun_rate: float) -> dict[str, Any]:
    """Collect results, compute E_hull, write the result files; return the S.U.N. summary."""
    results = collect_results(workdir, config.hull)
    summary = sun_summary(results, vun_rate=vun_rate)
    write_results(workdir, results, summary)
    return summary


@flow(name="dft-batch")
def dft_batch(
    candidates_path: Path,
    workdir: Path,
    config: DftStageConfig | None = None,
    limit: int | None = None,
    vun_rate: float = 1.0,
    poll_s: float = 30.0,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Submit → wait → collect for one batch of DFT candidates.

    Parameters
    ----------
    candidates_path
        Candidates (records parquet, CSV with ``cif``, CIF file or directory).
    workdir
        DFT work directory on the shared filesystem.
    config
        Stage configuration; defaults to :class:`DftStageConfig` defaults.
    limit
        Submit only the first ``limit`` candidates.
    vun_rate
        V.U.N. fraction of the generated set, for the S.U.N. rate.
    poll_s, timeout_s
        Polling interval and optional limit while waiting for SLURM.

    Returns
    -------
    dict
        The S.U.N. summary (also written to ``<workdir>/dft_summary.json``).
    """
    config = config or DftStageConfig()
    submit_task(candidates_path, workdir, config, limit)
    wait_task(workdir, poll_s, timeout_s)
    return collect_task(workdir, config, vun_rate)
