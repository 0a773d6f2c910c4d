"""``discovery report RUN_DIR``: rebuild a run's report from the files in its directory."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/<run id>)."),
) -> None:
    """Rebuild report/index.html, report/report.md and metrics.json of an existing run."""
    from tasks.pipeline.report import write_report

    if not (run_dir / "config.yaml").is_file():
        raise typer.BadParameter(f"{run_dir} is not a run directory (no config.yaml)")
    built = write_report(run_dir)
    typer.echo(f"wrote {built.html} and {built.html.parent / 'report.md'}")
    for key, rates in built.metrics.items():
        typer.echo(f"{key}: " + ", ".join(f"{name} {r['paper']}" for name, r in rates.items()))


def register(app: typer.Typer) -> None:
    """Add ``report`` to the ``discovery`` command."""
    app.command("report")(report)
