"""``discovery train`` and ``discovery sample``: the generative models (MCFlow, SymADiT).

Both commands build a typed request (:mod:`models.contract`) and hand it to the model the
registry names (:func:`models.registry.get_model`), imported only then so the CLI starts
fast; options a model does not take are refused by that model with a clear message.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

from models.contract import SampleRequest, TrainRequest
from models.registry import get_model, model_names

ModelName = StrEnum("ModelName", {name: name for name in model_names()})  # type: ignore[misc]


class TaskName(StrEnum):
    """Sampling tasks (MCFlow: all three; SymADiT: dng)."""

    dng = "dng"
    csp = "csp"
    atg = "atg"


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
    request = TrainRequest(profile=config, dataset=dataset, out_dir=out, resume=resume)
    typer.echo(str(get_model(model.value).train(request)))


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
    guidance: float | None = typer.Option(
        None,
        "--guidance",
        min=0,
        help="Guidance weight w (1 = none): SymADiT classifier-free, MCFlow noisy (CSP/ATG). "
        "Default: the model's (SymADiT 1.5; MCFlow 2 when k = 1, else none).",
    ),
    spacegroup: list[int] | None = typer.Option(
        None, "--spacegroup", help="SymADiT: space groups to sample (repeatable, cycled)."
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (part of every sample id)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
) -> None:
    """Generate crystals; writes samples.parquet, samples.extxyz and cifs/ to --out."""
    request = SampleRequest(
        checkpoint=checkpoint,
        task=task.value,
        n=n,
        compositions=_formulas(formula, compositions),
        structures=structures,
        k=k,
        mask_sites=json.loads(mask_sites) if mask_sites else None,
        steps=steps,
        guidance=guidance,
        spacegroups=spacegroup or None,
        seed=seed,
        out_dir=out,
    )
    try:
        records = get_model(model.value).sample(request)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    n_ok = sum(r.status == "ok" for r in records)
    typer.echo(f"{n_ok} of {len(records)} samples ok -> {out}")


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``sample`` to the ``discovery`` command."""
    app.command("train")(train)
    app.command("sample")(sample)
