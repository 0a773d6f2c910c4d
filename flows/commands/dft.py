"""``discovery dft``: submit DFT batches to SLURM, follow them, collect the DFT hull."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from tasks.dft.settings import DftStageConfig

dft_app = typer.Typer(
    help="DFT: atomate2 VASP MPRelaxSet on a SLURM cluster (submit, status, collect, "
    "resubmit), or CP2K here or on SLURM on a hull of recomputed phases (cp2k).",
    no_args_is_help=True,
)

CONFIG_NAME = "config.json"


def _load_stage_config(config: Path | None, workdir: Path | None) -> DftStageConfig:
    """The stage config: ``--config`` YAML, else the one saved in the work directory."""
    from tasks.core.config import load_config, validate_config

    if config is not None:
        return load_config(config, DftStageConfig)
    saved = workdir / CONFIG_NAME if workdir is not None else None
    if saved is not None and saved.exists():
        return validate_config(json.loads(saved.read_text()), DftStageConfig, str(saved))
    return DftStageConfig()


@dft_app.command("submit")
def submit(
    candidates: Path = typer.Argument(..., help="Records parquet, CSV with cif, CIF or CIF dir."),
    workdir: Path = typer.Option(..., "--workdir", "-w", help="DFT work dir (shared FS)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML: dft/slurm/hull."),
    limit: int | None = typer.Option(None, help="Submit only the first N candidates."),
) -> None:
    """Submit candidates as one SLURM array batch (already-known calculations are skipped).

    Exits non-zero when the batch could not be submitted (``sbatch`` missing or refusing).
    """
    from tasks.core.atomic import write_json_atomic
    from tasks.dft.submit import read_candidates, submit_candidates

    stage = _load_stage_config(config, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / CONFIG_NAME, stage.model_dump(mode="json"))
    report = submit_candidates(read_candidates(candidates, limit), workdir, stage.dft, stage.slurm)
    typer.echo(
        f"batch {report.batch_id} (SLURM job {report.job_id}): {len(report.submitted)} submitted, "
        f"{len(report.skipped)} skipped, {len(report.rejected)} rejected, "
        f"{len(report.failed)} failed"
    )
    for key, why in {**report.skipped, **report.rejected, **report.failed}.items():
        typer.echo(f"  {key}: {why}")
    if report.failed:
        typer.echo(f"failed: {next(iter(report.failed.values()))}", err=True)
        raise typer.Exit(1)


@dft_app.command("status")
def status(
    workdir: Path = typer.Option(..., "--workdir", "-w"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list."),
) -> None:
    """Show every calculation's status (SLURM queue + results store)."""
    from tasks.dft.submit import calc_statuses, status_summary, statuses_as_dicts

    statuses = calc_statuses(workdir)
    if as_json:
        typer.echo(json.dumps(statuses_as_dicts(statuses), indent=1))
        return
    for s in statuses:
        extra = f" [{s.scheduler_id} {s.scheduler_state}]" if s.scheduler_state else ""
        reason = f": {s.reason.splitlines()[-1] if s.reason else ''}" if s.reason else ""
        typer.echo(f"{s.candidate_id:24s} {s.formula:12s} {s.status:10s}{extra}{reason}")
    typer.echo(json.dumps(status_summary(statuses)))


@dft_app.command("collect")
def collect(
    workdir: Path = typer.Option(..., "--workdir", "-w"),
    config: Path | None = typer.Option(None, "--config", "-c"),
    entries: Path | None = typer.Option(None, help="Reference entries JSON (offline hull)."),
    mp_cache: Path | None = typer.Option(None, help="Per-chemsys MP entries cache directory."),
    earlier: list[Path] = typer.Option([], help="dft_results.json of earlier rounds."),
    vun_rate: float = typer.Option(1.0, help="V.U.N. fraction before DFT (for S.U.N.)."),
) -> None:
    """Collect finished calculations into E_hull and the DFT S.U.N. count."""
    from tasks.dft.collect import collect_results, dft_counts, write_results
    from tasks.pipeline.sun import dft_sun_summary

    hull = _load_stage_config(config, workdir).hull
    updates = {"entries_file": entries, "mp_cache_dir": mp_cache}
    hull = hull.model_copy(update={k: v for k, v in updates.items() if v is not None})
    if earlier:
        hull = hull.model_copy(update={"earlier_results": list(earlier)})
    results = collect_results(workdir, hull)
    summary = dft_sun_summary(dft_counts(results), vun_rate)
    path = write_results(workdir, results, summary)
    for r in results:
        e_hull = f"{r.e_hull_dft:+.3f}" if r.e_hull_dft is not None else "   n/a"
        flag = "stable" if r.stable else "metastable" if r.metastable else ""
        typer.echo(f"{r.id:24s} {r.formula:12s} {r.dft_status:10s} {e_hull} {flag} {r.reason}")
    typer.echo(
        f"S.U.N. {summary['sun']['paper']}  M.S.U.N. {summary['msun']['paper']} "
        f"of {summary['n_checked']} checked ({summary['n_failed']} failed)  -> {path}"
    )


@dft_app.command("cp2k")
def cp2k(
    candidates: Path = typer.Argument(..., help="Records parquet, CSV with cif, CIF or CIF dir."),
    workdir: Path = typer.Option(..., "--workdir", "-w", help="DFT work dir."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML of the DFT stage: cp2k / cp2k_run / slurm / hull."
    ),
    workers: int | None = typer.Option(None, help="Local CP2K processes (default: one a core)."),
    collect_only: bool = typer.Option(
        False,
        "--collect-only",
        help="Start no calculation (new candidates are registered as unsubmitted): place "
        "what is computed so far.",
    ),
) -> None:
    """Compute candidates with CP2K (here or on SLURM) and place them on a hull of their
    competing phases recomputed with the same settings (CHGNet's hull chooses the phases)."""
    import pandas as pd

    from tasks.dft.cp2k_stage import run_cp2k_stage
    from tasks.dft.settings import cp2k_problem
    from tasks.mlip.settings import ScreenSettings

    stage = _load_stage_config(config, workdir).model_copy(update={"mode": "cp2k"})
    if workers is not None:
        placement = stage.cp2k_run.model_copy(update={"workers": workers})
        stage = stage.model_copy(update={"cp2k_run": placement})
    if problem := cp2k_problem(stage.cp2k, command_needed=not collect_only):
        raise typer.BadParameter(problem)
    results = pd.read_parquet(
        run_cp2k_stage(candidates, workdir, stage, ScreenSettings(), start_new=not collect_only)
    )
    typer.echo(stage.describe())
    for row in results.itertuples():
        e_hull = f"{row.e_hull_dft:+.3f}" if pd.notna(row.e_hull_dft) else "   n/a"
        typer.echo(f"{row.id:24s} {row.formula:12s} {row.dft_status:10s} {e_hull} {row.reason}")


@dft_app.command("resubmit")
def resubmit(
    workdir: Path = typer.Option(..., "--workdir", "-w"),
    failed: bool = typer.Option(False, "--failed", help="Resubmit the failed calculations."),
    config: Path | None = typer.Option(None, "--config", "-c", help="New SLURM settings."),
    here: bool = typer.Option(
        False, "--here", help="Run them as local processes and wait (CP2K without SLURM)."
    ),
    workers: int | None = typer.Option(None, help="With --here: processes at once."),
    wall_time: float | None = typer.Option(
        None, "--wall-time", help="With --here: stop a calculation after this many seconds."
    ),
) -> None:
    """Resubmit failed calculations (next attempt, same DFT settings), to SLURM or here."""
    from tasks.dft.local import rerun_failed_here
    from tasks.dft.submit import resubmit_failed

    if not failed:
        raise typer.BadParameter("nothing selected: pass --failed")
    if (workers is not None or wall_time is not None) and not here:
        raise typer.BadParameter("--workers and --wall-time are for --here (SLURM has its own)")
    if here:
        outcome = rerun_failed_here(workdir, workers, wall_time)
        for calc_id, status in outcome.items():
            typer.echo(f"{calc_id}: {status}")
        typer.echo(
            f"{len(outcome)} failed calculations; `discovery dft cp2k CANDIDATES -w DIR "
            "--collect-only` places them on their recomputed hull"
        )
        return
    reports = resubmit_failed(workdir, _load_stage_config(config, workdir).slurm)
    for report in reports:
        typer.echo(
            f"batch {report.batch_id} (SLURM job {report.job_id}): "
            f"{len(report.submitted)} resubmitted"
        )
    if not reports:
        typer.echo("no failed calculations")
    if failures := [f for report in reports for f in report.failed.values()]:
        typer.echo(f"failed: {failures[0]}", err=True)
        raise typer.Exit(1)


@dft_app.command("write-inputs")
def write_inputs(
    structure: Path = typer.Argument(..., help="A structure file (CIF, POSCAR...)."),
    outdir: Path = typer.Argument(..., help="Where to write INCAR/KPOINTS/POSCAR/POTCAR(.spec)."),
    config: Path | None = typer.Option(None, "--config", "-c"),
    potcar_spec: bool = typer.Option(True, help="Write POTCAR.spec instead of POTCAR."),
) -> None:
    """Dry run: write the relaxation's VASP inputs for one structure."""
    from pymatgen.core import Structure

    from tasks.dft.makers import write_relax_inputs

    settings = _load_stage_config(config, None).dft.model_copy(update={"potcar_spec": potcar_spec})
    write_relax_inputs(Structure.from_file(structure), outdir, settings)
    typer.echo(f"wrote inputs to {outdir}")


@dft_app.command("export")
def export(
    archive: Path = typer.Argument(..., help="The .tar.xz to write."),
    workdir: Path = typer.Option(..., "--workdir", "-w", help="DFT work dir to pack."),
) -> None:
    """Pack the completed calculations of a work directory (records and job documents, no
    run directories) to carry them to another machine."""
    from tasks.dft.archive import export_completed

    try:
        packed = export_completed(workdir, archive)
    except FileNotFoundError as err:
        typer.echo(f"not exported: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"{len(packed)} completed calculations -> {archive}")


@dft_app.command("import")
def import_(
    archive: Path = typer.Argument(..., help="A .tar.xz of `discovery dft export`."),
    workdir: Path = typer.Option(..., "--workdir", "-w", help="DFT work dir to add them to."),
) -> None:
    """Add an archive's completed calculations to a work directory (the references
    directory, say) where it has no result of its own: its completed and SLURM-submitted
    calculations are kept."""
    import lzma
    import tarfile

    from tasks.dft.archive import ArchiveError, import_completed

    try:
        added = import_completed(archive, workdir)
    except (ArchiveError, tarfile.TarError, lzma.LZMAError, EOFError, OSError) as err:
        typer.echo(f"not imported: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"{len(added)} calculations added to {workdir}")


@dft_app.command("run-task", hidden=True)
def run_task(batch_file: Path, index: int) -> None:
    """Run one array task of a batch on this node (the job script runs tasks.dft.node)."""
    from tasks.dft.node import run_batch_task

    if not run_batch_task(batch_file, index):
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    """Add the ``dft`` command group."""
    app.add_typer(dft_app, name="dft")
