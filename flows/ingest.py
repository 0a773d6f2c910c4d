"""Prefect flow ``ingest``: thin wrapper over :mod:`tasks.ingest.run`."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task

from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.ingest.run import IngestResult, ingest_source, sources_in, split_dir, write_summary
from tasks.pipeline.config import PipelineConfig


@task(name="ingest-source", task_run_name="ingest-{name}")
def ingest_source_task(
    name: str, source: DatasetSource, out_dir: Path, config: IngestConfig
) -> IngestResult:
    """Ingest one dataset source (one split) into ``out_dir``."""
    return ingest_source(source, out_dir, config)


@flow(name="ingest")
def ingest_flow(
    path: str | None = None,
    out_dir: str = "runs/quick/dataset",
    config: PipelineConfig | None = None,
    limit: int | None = None,
) -> list[IngestResult]:
    """Ingest datasets; write per-split outputs and a summary table.

    Parameters
    ----------
    path
        CSV / extxyz file, folder of CIFs, or folder of CSV splits (``../shared/data/mp_20``);
        ``None`` ingests the ``datasets`` of ``config`` into ``<out_dir>/<key>/``.
    out_dir
        Output root; each split of ``path`` goes to ``<out_dir>/<folder>__<split>/``.
    config
        Pipeline configuration (its ``ingest`` section; default: the quick profile's values).
    limit
        Read at most this many entries per split (quick runs).
    """
    config = config or PipelineConfig()
    if path is None:
        targets = {key: (src, Path(out_dir) / key) for key, src in config.datasets.items()}
    else:
        found = sources_in(path, limit=limit)
        targets = {name: (src, split_dir(out_dir, name)) for name, src in found.items()}
    results = [
        ingest_source_task(name, source, target, config.ingest)
        for name, (source, target) in targets.items()
    ]
    write_summary(results, out_dir)
    return results
