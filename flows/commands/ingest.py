"""``discovery ingest``: parse, check and analyse a dataset into the processed format."""

from __future__ import annotations

from pathlib import Path

import typer

from tasks.core.config import ConfigError, load_config
from tasks.pipeline.config import PipelineConfig


def ingest(
    path: Path | None = typer.Argument(
        None,
        help="CSV/extxyz file, CIF folder, or folder of CSV splits (../shared/data/mp_20); "
        "default: the datasets of the --config profile.",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output directory."),
    config: str = typer.Option("quick", "--config", "-c", help="Profile name or YAML path."),
    symprec: float | None = typer.Option(None, help="Symmetry tolerance (Å), default 0.1."),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Processes; 0 = all cores."),
    limit: int | None = typer.Option(None, help="At most this many entries per split."),
    cache_dir: Path | None = typer.Option(None, help="Analysis cache (default data/cache)."),
    prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow 'ingest'."),
    write_seed: Path | None = typer.Option(
        None,
        help="Instead, write the profile's datasets' analyses as seed files into this folder "
        "(data/samples ships the bundled sample's).",
    ),
) -> None:
    """Ingest a dataset: processed parquet, rejects, stats and plots per split."""
    from tasks.ingest.run import (
        ingest_path,
        ingest_sources,
        seed_path,
        summary_table,
        write_analysis_seed,
    )

    overrides = {"symprec": symprec, "n_workers": workers, "cache_dir": cache_dir}
    try:
        settings = load_config(
            config,
            PipelineConfig,
            {
                f"ingest.{k}": str(v) if isinstance(v, Path) else v
                for k, v in overrides.items()
                if v is not None
            },
        )
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err
    if write_seed is not None:
        for source in settings.datasets.values():
            written = write_analysis_seed(source, settings.ingest, seed_path(source, write_seed))
            typer.echo(f"wrote {written}")
        return
    out = out or settings.run_root / settings.profile / "dataset"
    if prefect:
        from flows.ingest import ingest_flow

        results = ingest_flow(str(path) if path else None, str(out), settings, limit)
    elif path is None:
        results = ingest_sources(settings.datasets, out, settings.ingest)
    else:
        results = ingest_path(path, out, settings.ingest, limit)
    typer.echo(summary_table(results))
    for result in results:
        typer.echo(f"{result.name}: {result.dataset}  (rejects: {result.rejects})")


def register(app: typer.Typer) -> None:
    """Add ``ingest`` to the ``discovery`` command."""
    app.command("ingest")(ingest)
