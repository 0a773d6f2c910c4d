"""``discovery train`` and ``discovery sample``: the generative models (MCFlow, SymADiT).

Both commands dispatch to ``models.<model>.api.train`` / ``models.<model>.api.sample``,
imported lazily so the CLI starts fast and a missing model gives a clear error.
"""

from __future__ import annotations

import importlib
import json
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any

import typer


class ModelName(StrEnum):
    """The generative models of the project."""

    mcflow = "mcflow"
    symadit = "symadit"


class TaskName(StrEnum):
    """Sampling tasks (MCFlow: all three; SymADiT: dng)."""

    dng = "dng"
    csp = "csp"
    atg = "atg"


def model_api(model: str) -> ModuleType:
    """Import ``models.<model>.api`` or exit with a clear message."""
    name = f"models.{model}.api"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name is not None and name.startswith(err.name):
            typer.echo(f"model {model!r} is not available: module {name} not found", err=True)
            raise typer.Exit(code=2) from None
        raise


def _formulas(formula: list[str] | None, compositions: Path | None) -> list[str] | None:
    out = list(formula or [])
    if compositions is not None:
        lines = compositions.read_text().splitlines()
        out.extend(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))
    return out or None


def train(
    model: ModelName = typer.Option(..., "--model", "-m", help="Which model to train."),
    config: str = typer.Option(..., "--config", "-c", help="YAML file or profile (tiny, S...)."),
    dataset: Path = typer.Option(..., "--dataset", "-d", help="Ingested dataset.parquet."),
    out: Path = typer.Option(..., "--out", "-o", help="Training directory (checkpoints, logs)."),
    resume: bool = typer.Option(False, "--resume", help="Continue exactly from out/latest.pt."),
) -> None:
    """Train a generative model; prints the checkpoint to sample from."""
    checkpoint = model_api(model.value).train(config, dataset, out, resume=resume)
    typer.echo(str(checkpoint))


def sample(
    model: ModelName = typer.Option(..., "--model", "-m", help="Which model to sample."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Checkpoint file or train dir."),
    task: TaskName = typer.Option(TaskName.dng, "--task", "-t", help="dng, csp or atg."),
    n: int | None = typer.Option(None, "-n", help="Number of de novo samples (dng)."),
    formula: list[str] | None = typer.Option(None, "--formula", "-f", help="CSP formula."),
    compositions: Path | None = typer.Option(
        None, "--compositions", help="CSP: text file with one formula per line."
    ),
    structures: Path | None = typer.Option(
        None, "--structures", help="Structure set (CSP: its compositions; ATG: its structures)."
    ),
    k: int = typer.Option(1, "-k", help="Samples per composition / structure."),
    mask_sites: str | None = typer.Option(
        None, "--mask-sites", help="ATG substitution: JSON list of site-index lists."
    ),
    steps: int | None = typer.Option(None, "--steps", help="Integration steps."),
    guidance: bool | None = typer.Option(
        None, "--guidance/--no-guidance", help="Noisy guidance (default: on iff k = 1)."
    ),
    guidance_scale: float | None = typer.Option(
        None, "--guidance-scale", help="SymADiT: classifier-free guidance scale (default 1.5)."
    ),
    spacegroup: list[int] | None = typer.Option(
        None, "--spacegroup", help="SymADiT: space groups to sample (repeatable, cycled)."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (part of every sample id)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
) -> None:
    """Generate crystals; writes samples.parquet, samples.extxyz and cifs/ to --out."""
    kwargs: dict[str, Any] = {"out_dir": out, "seed": seed}
    optional = {
        "n": n,
        "compositions": _formulas(formula, compositions),
        "structures": structures,
        "steps": steps,
        "guidance": guidance,
        "mask_sites": json.loads(mask_sites) if mask_sites else None,
        "spacegroups": spacegroup or None,
    }
    if guidance_scale is not None:
        if model.value != "symadit":
            raise typer.BadParameter(
                "only SymADiT has a guidance scale", param_hint="--guidance-scale"
            )
        optional["guidance"] = guidance_scale
    if spacegroup and model.value != "symadit":
        raise typer.BadParameter(
            "only SymADiT samples given space groups", param_hint="--spacegroup"
        )
    kwargs.update({key: value for key, value in optional.items() if value is not None})
    if k != 1:
        kwargs["k"] = k
    records = model_api(model.value).sample(checkpoint, task.value, **kwargs)
    n_ok = sum(r.status == "ok" for r in records)
    typer.echo(f"{n_ok} of {len(records)} samples ok -> {out}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``sample`` to the ``discovery`` command."""
    app.command("train")(train)
    app.command("sample")(sample)
