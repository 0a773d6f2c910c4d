"""``discovery relax`` and ``discovery hull``: MLIP pre-relaxation and the MLIP-consistent hull."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import NoReturn, cast

import typer

from flows.commands import default_of, given
from tasks.mlip.backends import MLIPUnavailableError
from tasks.mlip.documents import HULL_SUMMARY, RELAX_META, HullSummary, RelaxMeta
from tasks.mlip.settings import CommitteeConfig, MLIPConfig, MLIPHullConfig, RelaxConfig


def _fail(err: Exception) -> NoReturn:
    """Print a clear one-line error and exit with status 1 (no traceback for user errors)."""
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1)


def relax(
    candidates: Path = typer.Argument(..., help="Records .parquet, .extxyz or .csv(.gz) with cif."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (resumable)."),
    mlip: str = typer.Option(
        default_of(MLIPConfig, "name"), "--mlip", help="chgnet | mace | matgl."
    ),
    model: str | None = typer.Option(None, help="Model name or local path (mace/matgl need one)."),
    model_sha256: str | None = typer.Option(
        None, help="Approve a pickled (MACE / matgl) model file: its sha256."
    ),
    model_cache: Path | None = typer.Option(None, help="Where named MACE/matgl models live."),
    device: str | None = typer.Option(
        None, help=f"cpu | cuda (default {default_of(MLIPConfig, 'device')})."
    ),
    fmax: float | None = typer.Option(
        None, help=f"Force convergence, eV/Å (default {default_of(RelaxConfig, 'fmax')})."
    ),
    steps: int | None = typer.Option(
        None,
        help=f"FIRE step limit; 0 = single point (default {default_of(RelaxConfig, 'steps')}).",
    ),
    fix_symmetry: bool = typer.Option(False, "--fix-symmetry", help="Keep the space group."),
    time_budget: float | None = typer.Option(
        None, help=f"Seconds per candidate (default {default_of(RelaxConfig, 'time_budget_s')})."
    ),
    engine: str | None = typer.Option(
        None, help="ase | batched (MACE; each chunk one batch on the model, the GPU path)."
    ),
    scheduler: str | None = typer.Option(
        None,
        help=f"Where chunks run: serial | process | dask "
        f"(default {default_of(RelaxConfig, 'scheduler')}; 'batched' = --engine batched).",
    ),
    scheduler_address: str | None = typer.Option(None, help="Dask scheduler (default: local)."),
    workers: int | None = typer.Option(
        None, "--workers", "-j", help="Processes; 0 = all cores (the default)."
    ),
    chunk_size: int | None = typer.Option(
        None,
        help=f"Candidates per task and per output file (default "
        f"{default_of(RelaxConfig, 'chunk_size')}; the batch size with --engine batched).",
    ),
) -> None:
    """Relax candidates with an MLIP (FIRE + Fréchet cell filter), one process per core."""
    from tasks.core.config import ConfigError, validate_config
    from tasks.mlip.runner import run_relax

    try:
        mlip_config = validate_config(
            given(
                name=mlip,
                model=model,
                model_sha256=model_sha256,
                cache_dir=model_cache,
                device=device,
            ),
            MLIPConfig,
            "--mlip/--model options",
        )
        config = validate_config(
            given(
                fmax=fmax,
                steps=steps,
                fix_symmetry=fix_symmetry or None,
                time_budget_s=time_budget,
                engine=engine,
                scheduler=scheduler,
                scheduler_address=scheduler_address,
                n_workers=workers,
                chunk_size=chunk_size,
            ),
            RelaxConfig,
            "relax options",
        )
    except ConfigError as err:
        _fail(err)
    try:
        path = run_relax(candidates, out, mlip_config, config)
    except (MLIPUnavailableError, ValueError, FileNotFoundError) as err:
        _fail(err)
    meta = RelaxMeta.read(out / RELAX_META)
    typer.echo(f"{path}: {meta.status_counts}, converged {meta.n_converged}")


def hull(
    relaxed: Path = typer.Argument(..., help="Output directory of `discovery relax`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    reference: list[Path] | None = typer.Option(
        None,
        "--reference",
        "-r",
        help="Reference set(s) (.parquet/.csv.gz/CIF dir); default: every MP-20 / MPTS-52 "
        "phase of the reference table (the papers' hull).",
    ),
    energies: str | None = typer.Option(
        None,
        help="table | single_point | relaxed: where reference energies come from "
        f"(default {default_of(MLIPHullConfig, 'energies')}).",
    ),
    table: Path | None = typer.Option(None, help="Reference energy table (default: shipped)."),
    single_point: bool = typer.Option(
        False, "--single-point", help="Old flag: --energies single_point."
    ),
    cache_dir: Path | None = typer.Option(None, help="Reference energy cache directory."),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Processes; 0 = all cores."),
    committee: list[str] | None = typer.Option(
        None,
        "--committee",
        help="A further MLIP (repeatable, e.g. sevennet) judging at the relaxed geometry on "
        "its own hull (single points, cached); a crystal is (meta)stable when --min-agree agree.",
    ),
    min_agree: int | None = typer.Option(None, help="Committee votes needed (default: all)."),
) -> None:
    """E_hull of relaxed candidates against the competing phases, same MLIP; rows carry
    reference coverage and flags (and, with --committee, every member's verdict)."""
    from tasks.core.config import ConfigError, validate_config
    from tasks.mlip.hull import HullError, read_relaxed, recorded_screen
    from tasks.mlip.hull_stage import run_hull
    from tasks.mlip.reference_table import TableMismatchError

    try:
        _, meta = read_relaxed(relaxed)
        recorded = recorded_screen(meta)
        relax_config = recorded.relax
        if workers is not None:
            relax_config = relax_config.model_copy(update={"n_workers": workers})
        options = given(
            reference=[str(p) for p in reference] if reference else None,
            energies=energies or ("single_point" if single_point else None),
            table=table,
            cache_dir=cache_dir,
        )
        hull_config = validate_config(options, MLIPHullConfig, "hull options")
        members = [
            {"mlip": {"name": name}, "hull": {"energies": "single_point", "cache_dir": cache_dir}}
            for name in committee or []
        ]
        voting = validate_config(
            given(members=members, min_agree=min_agree), CommitteeConfig, "--committee"
        )
        screen = recorded.model_copy(
            update={"relax": relax_config, "hull": hull_config, "committee": voting}
        )
        path = run_hull(relaxed, out, screen)
    except (HullError, MLIPUnavailableError, TableMismatchError, ConfigError, ValueError) as err:
        _fail(err)
    summary = HullSummary.read(out / HULL_SUMMARY)
    typer.echo(
        f"{path}: {summary.n_on_hull}/{summary.n_candidates} placed, "
        f"{summary.n_stable} stable, {summary.n_metastable} metastable, "
        f"{summary.n_flagged} flagged ({summary.n_uncovered} with uncovered systems); "
        f"references: {summary.reference}"
    )
    if summary.committee is not None:
        typer.echo(summary.committee.describe())
    if summary.warning:
        typer.echo(f"warning: {summary.warning}")


def hull_reference_build(
    out: Path = typer.Option(..., "--out", "-o", help="The table (.parquet)."),
    source: list[Path] | None = typer.Option(
        None, "--source", "-s", help="Structure sets (default: every MP-20 / MPTS-52 split)."
    ),
    mlip: str = typer.Option(default_of(MLIPConfig, "name"), "--mlip"),
    model: str | None = typer.Option(None, help="Model name or local path (mace/matgl)."),
    method: str = typer.Option("single_point", help="single_point | relaxed."),
    cluster: str = typer.Option(
        "none", help="Where chunks run: none (local processes) | local (Dask) | address | slurm."
    ),
    address: str | None = typer.Option(None, help="Dask scheduler for --cluster address."),
    profile: str | None = typer.Option(
        None, "--config", "-c", help="A profile whose dask: section (e.g. slurm jobs) is used."
    ),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Local processes."),
    chunk_size: int = typer.Option(256, help="Phases per task and per saved chunk."),
    bias: Path | None = typer.Option(
        None, help="reference_bias.json of benchmarks/reference_bias.py, recorded in the table."
    ),
) -> None:
    """Build a reference energy table: the MLIP energy of every distinct competing phase.

    Chunks run on a Dask cluster when asked (the same command builds a million-phase table
    on SLURM Dask workers) and are saved as they finish, so an interrupted build resumes.
    """
    from tasks.core.cluster import DaskConfig, dask_cluster, dask_mapper
    from tasks.core.config import ConfigError, load_config, validate_config
    from tasks.core.paths import shared_data_dir
    from tasks.mlip.reference_table import (
        Method,
        build_reference_table,
        default_sources,
        read_bias,
    )
    from tasks.pipeline.config import PipelineConfig

    try:
        mlip_config = validate_config(given(name=mlip, model=model), MLIPConfig, "--mlip")
        dask = (
            load_config(profile, PipelineConfig).dask
            if profile
            else validate_config(given(cluster=cluster, address=address), DaskConfig, "--cluster")
        )
        relax = RelaxConfig(chunk_size=chunk_size, **given(n_workers=workers))
        if method not in ("single_point", "relaxed"):
            raise ValueError(f"--method must be single_point or relaxed, not {method!r}")
    except (ConfigError, ValueError) as err:
        _fail(err)
    how = cast(Method, method)
    sources = list(source) if source else default_sources(shared_data_dir())
    if not sources:
        _fail(ValueError(f"no --source given and no MP-20 / MPTS-52 split in {shared_data_dir()}"))
    try:
        measured = read_bias(bias) if bias else None
    except ValueError as err:
        _fail(err)
    with contextlib.ExitStack() as stack:
        running = stack.enter_context(dask_cluster(dask))
        mapper = stack.enter_context(dask_mapper(running.address)) if running else None
        path = build_reference_table(sources, out, mlip_config, how, relax, mapper, measured)
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")


def hull_ensemble(
    hulls: list[Path] = typer.Argument(..., help="Output directories of `discovery hull`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    min_agree: int = typer.Option(2, help="MLIPs that must agree on (meta)stability."),
) -> None:
    """Combine per-MLIP hulls: E_hull mean/std and stability agreed by >= --min-agree MLIPs."""
    import pandas as pd

    from tasks.core.atomic import atomic_write
    from tasks.mlip.committee import committee_verdicts

    try:
        results = {}
        for directory in hulls:
            frame = pd.read_parquet(directory / "hull.parquet")
            results[str(frame["mlip_version"].iloc[0])] = frame
        table = committee_verdicts(results, min_agree)
    except (OSError, ValueError) as err:
        _fail(err)
    path = atomic_write(out / "ensemble.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    typer.echo(
        f"{path}: {int(table['stable'].sum())} stable, {int(table['metastable'].sum())} "
        f"metastable by >= {min_agree} of {len(results)} MLIPs"
    )


def register(app: typer.Typer) -> None:
    """Add ``relax``, ``hull`` and ``hull-ensemble`` to the ``discovery`` command."""
    app.command("relax")(relax)
    app.command("hull")(hull)
    reference_app = typer.Typer(
        help="Reference energy tables of the MLIP hull.", no_args_is_help=True
    )
    reference_app.command("build")(hull_reference_build)
    app.add_typer(reference_app, name="hull-reference")
    app.command("hull-ensemble")(hull_ensemble)
