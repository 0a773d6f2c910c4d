"""Prefect flow ``dft-batch``: submit candidates to SLURM, wait, collect the DFT hull.

A thin wrapper: the work happens in :mod:`tasks.dft.submit` (submission, tracking) and
:mod:`tasks.dft.collect` (collection, E_hull); the S.U.N. figure is
:func:`tasks.pipeline.sun.funnel_rate`'s. Waiting is plain polling of the shared work
directory, so the flow can run on a login node and be restarted at any point: resubmitting
finds the existing calculations (idempotent by structure and settings hash).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from tasks.core.stability import StabilityRule
from tasks.dft.collect import collect_results, dft_counts, write_results
from tasks.dft.settings import DftStageConfig
from tasks.dft.submit import (
    SubmitReport,
    read_candidates,
    status_summary,
    submit_candidates,
    wait_for_batch,
)
from tasks.pipeline.sun import dft_sun_summary


@task(name="dft-submit")
def submit_task(
    candidates_path: Path, workdir: Path, config: DftStageConfig, limit: int | None
) -> SubmitReport:
    """Read the candidates and submit the new ones as a SLURM array batch.

    Raises
    ------
    RuntimeError
        The batch could not be submitted (``sbatch`` missing or refusing it).
    """
    candidates = read_candidates(candidates_path, limit=limit)
    report = submit_candidates(candidates, workdir, config.dft, config.slurm)
    if report.failed:
        raise RuntimeError(f"submission failed: {next(iter(report.failed.values()))}")
    return report


@task(name="dft-wait")
def wait_task(workdir: Path, poll_s: float, timeout_s: float | None) -> dict[str, int]:
    """Poll until no calculation is queued or running; return counts per status."""
    return status_summary(wait_for_batch(workdir, poll_s=poll_s, timeout_s=timeout_s))


@task(name="dft-collect")
def collect_task(
    workdir: Path, config: DftStageConfig, rule: StabilityRule, vun_rate: float
) -> dict[str, Any]:
    """Collect results, compute E_hull, write the result files; return the S.U.N. summary."""
    results = collect_results(workdir, config.hull, rule)
    summary = dft_sun_summary(dft_counts(results), vun_rate)
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
    rule: StabilityRule | None = None,
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
    rule
        The stable / metastable thresholds.

    Returns
    -------
    dict
        The counts and the S.U.N. summary (also written to ``<workdir>/dft_summary.json``).
    """
    config = config or DftStageConfig()
    submit_task(candidates_path, workdir, config, limit)
    wait_task(workdir, poll_s, timeout_s)
    return collect_task(workdir, config, rule or StabilityRule(), vun_rate)
