"""``discovery screen SAMPLES``: any generator's crystals through the whole S.U.N. graph.

Validity, uniqueness, novelty, MLIP relaxation, the papers' hull, DFT (as the profile says)
and the report, on a file of crystals another generator made: the profile's settings with a
``samples`` entry (:class:`tasks.pipeline.config.ModelRun`) instead of (or beside) its models.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def screen(
    samples: Path = typer.Argument(..., help="CIF folder, extxyz, parquet or CSV of crystals."),
    label: str = typer.Option(..., "--label", "-l", help="The generator's name in the report."),
    config: str = typer.Option("quick", "--config", "-c", help="Profile name or YAML path."),
    run_id: str | None = typer.Option(None, help="Run id (reuse one to resume)."),
    limit: int | None = typer.Option(None, min=1, help="Screen only the first N crystals."),
    beside_models: bool = typer.Option(
        False, "--beside-models", help="Also train, sample and screen the profile's models."
    ),
) -> None:
    """Screen a generator's crystals end to end; print where the report is."""
    import yaml

    from flows.discovery import discovery_flow
    from tasks.core.config import ConfigError, load_config
    from tasks.pipeline.config import PROFILE_DIRS_ENV, ModelRun, PipelineConfig

    if not samples.exists():
        raise typer.BadParameter(f"{samples} does not exist")
    try:
        profile = load_config(config, PipelineConfig)
        entry = ModelRun(name="samples", path=samples.resolve(), label=label, limit=limit)
        models = [*profile.models, entry] if beside_models else [entry]
        data = profile.model_dump(mode="json")
        data["models"] = [m.model_dump(mode="json") for m in models]
        data["profile"] = f"screen-{label}"
        profile = PipelineConfig.model_validate(data)
    except (ConfigError, ValueError) as err:
        raise typer.BadParameter(str(err)) from err
    folder = (profile.run_root / "profiles").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"screen-{label}.yaml"
    path.write_text(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=True))
    # the generated profile lies outside configs/: let this process's flow read it
    os.environ[PROFILE_DIRS_ENV] = ":".join(
        p for p in (os.environ.get(PROFILE_DIRS_ENV, ""), str(folder)) if p
    )
    result = discovery_flow(profile=str(path), run_id=run_id)
    typer.echo(f"run {result['run_id']}: report {result['report']}")


def register(app: typer.Typer) -> None:
    """Add ``screen`` to the ``discovery`` command."""
    app.command("screen")(screen)
