"""``discovery evaluate``: validity, uniqueness, novelty and symmetry metrics of samples."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate(
    samples: Path = typer.Argument(..., help="CIF folder, extxyz, parquet or CSV of samples."),
    reference: Path = typer.Option(
        ..., "--reference", "-r", help="Training (reference) dataset: parquet, CSV, CIF dir."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default runs/evaluate/<samples name>)."
    ),
    workers: int = typer.Option(1, "--workers", "-j", min=1, help="Worker processes."),
    seed: int = typer.Option(0, help="Seed of the novelty and DFT draws."),
    novelty_draw: int = typer.Option(1000, min=1, help="Valid+unique drawn for novelty."),
    dft_draw: int = typer.Option(100, min=1, help="Valid+unique+novel drawn for DFT."),
    variant: str = typer.Option("cdvae", help="Structural validity: cdvae or lemat."),
    cache_dir: Path | None = typer.Option(None, help="Reference caches (default data/cache)."),
    prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow 'evaluate'."),
) -> None:
    """Evaluate generated crystals; print the paper-style row, write JSON and verdict tables."""
    from tasks.config import ConfigError, validate_config
    from tasks.evaluate import (
        EvaluateConfig,
        Reference,
        evaluate_samples,
        paper_row,
        write_evaluation,
    )
    from tasks.structure_io import read_structures

    try:
        config = validate_config(
            {
                "seed": seed,
                "workers": workers,
                "novelty_draw": novelty_draw,
                "dft_draw": dft_draw,
                "cache_dir": cache_dir,
                "validity": {"variant": variant},
            },
            EvaluateConfig,
            "command line",
        )
    except ConfigError as err:
        raise typer.BadParameter(str(err)) from err
    for path in (samples, reference):
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist")
    out = out or Path("runs") / "evaluate" / samples.name.split(".")[0]
    if prefect:
        from flows.evaluate import evaluate_flow

        result = evaluate_flow(str(samples), str(reference), str(out), config)
    else:
        result = evaluate_samples(read_structures(samples), Reference(reference, config), config)
        write_evaluation(result, out, name=samples.name)
    typer.echo(paper_row(result.metrics, samples.name))
    typer.echo(f"wrote {out}/metrics.json, verdicts.parquet, verdicts.csv, summary.md")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``discovery`` command."""
    app.command("evaluate")(evaluate)
