"""``discovery evaluate``: validity, uniqueness, novelty and symmetry metrics of samples."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands import default_of, given
from tasks.evaluate.settings import EvaluateConfig, ValidityConfig


def evaluate(
    samples: Path = typer.Argument(..., help="CIF folder, extxyz, parquet or CSV of samples."),
    reference: Path = typer.Option(
        ..., "--reference", "-r", help="Training (reference) dataset: parquet, CSV, CIF dir."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Output directory (default runs/evaluate/<samples name>)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-j",
        min=1,
        help=f"Worker processes (default {default_of(EvaluateConfig, 'workers')}).",
    ),
    seed: int | None = typer.Option(
        None,
        help=f"Seed of the novelty / DFT draws (default {default_of(EvaluateConfig, 'seed')}).",
    ),
    novelty_draw: int | None = typer.Option(
        None,
        min=1,
        help=f"V+U drawn for novelty (default {default_of(EvaluateConfig, 'novelty_draw')}).",
    ),
    dft_draw: int | None = typer.Option(
        None,
        min=1,
        help=f"V.U.N. drawn for DFT (default {default_of(EvaluateConfig, 'dft_draw')}).",
    ),
    variant: str | None = typer.Option(
        None,
        help=f"Validity: cdvae or lemat (default {default_of(ValidityConfig, 'variant')}).",
    ),
    cache_dir: Path | None = typer.Option(None, help="Reference caches (default data/cache)."),
    prefect: bool = typer.Option(False, "--prefect", help="Run as the Prefect flow 'evaluate'."),
) -> None:
    """Evaluate generated crystals; print the paper-style row, write JSON and verdict tables."""
    from tasks.core.config import ConfigError, validate_config
    from tasks.core.structure_io import read_structures
    from tasks.evaluate.funnel import Reference, evaluate_samples, write_evaluation
    from tasks.evaluate.metrics import paper_row

    options = given(
        seed=seed,
        workers=workers,
        novelty_draw=novelty_draw,
        dft_draw=dft_draw,
        cache_dir=cache_dir,
        validity=given(variant=variant) or None,
    )
    try:
        config = validate_config(options, EvaluateConfig, "command line")
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
