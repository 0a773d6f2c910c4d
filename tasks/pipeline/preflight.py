"""Configuration errors found before any work: every check a run would otherwise fail late.

:func:`preflight` runs in a second or two, before the run directory is made: missing
datasets and checkpoints, model profiles that do not validate, an MLIP whose model cannot be
found (or may not be unpickled), a reference table of another MLIP, SLURM asked for where
``sbatch`` does not exist. Each error names the configuration key.
"""

from __future__ import annotations

import shutil

from models.registry import check_profile
from tasks.core.config import ConfigError
from tasks.core.paths import resolve_data_path
from tasks.dft.settings import cp2k_problem
from tasks.mlip.backends import MLIPUnavailableError, load_mlip
from tasks.mlip.finetune import check_finetunable
from tasks.mlip.reference_table import (
    SHIPPED_TABLE,
    TableMeta,
    check_table,
    meta_path,
    shipped_table,
)
from tasks.mlip.runner import check_engine
from tasks.pipeline.config import PipelineConfig


def configuration_errors(config: PipelineConfig) -> list[str]:
    """Every problem of ``config`` that can be seen without doing the work, key first."""
    errors = []
    for key, source in config.datasets.items():
        if source.path is not None and not resolve_data_path(source.path).exists():
            errors.append(f"datasets.{key}.path: {resolve_data_path(source.path)} not found")
    for k, model in enumerate(config.models):
        if model.path is not None:
            if not resolve_data_path(model.path).exists():
                errors.append(f"models.{k}.path: {resolve_data_path(model.path)} not found")
            continue
        if model.checkpoint is not None:
            if not model.checkpoint.exists():
                errors.append(f"models.{k}.checkpoint: {model.checkpoint} not found")
            continue
        try:
            check_profile(model.name, model.profile)
        except ConfigError as err:
            errors.append(f"models.{k}.profile: {err}")
    version = None
    try:
        backend = load_mlip(config.mlip)
        version = backend.version
        check_engine(config.mlip, config.relax)
    except MLIPUnavailableError as err:
        errors.append(f"mlip.model: {err}")
    except ValueError as err:
        errors.append(f"relax.engine: {err}")
    for k, path in enumerate(config.hull.reference or []):
        if not resolve_data_path(path).exists():
            errors.append(f"hull.reference.{k}: {resolve_data_path(path)} not found")
    if config.hull.energies == "table" or config.hull.reference is None:
        shipped = shipped_table(version) if version is not None else None
        table = config.hull.table or shipped or SHIPPED_TABLE
        if not meta_path(table).is_file():
            errors.append(f"hull.table: {table} (or its .json provenance) not found")
        elif config.hull.energies == "table" and version is not None:
            try:
                check_table(
                    TableMeta.model_validate_json(meta_path(table).read_text()), version, table
                )
            except ValueError as err:
                errors.append(f"hull.table: {err}")
    if config.loop.mlip_finetune:
        try:
            check_finetunable(config.mlip)
        except ConfigError as err:
            errors.append(str(err))
        if config.dft.mode == "skip":
            errors.append("loop.mlip_finetune: needs DFT results, but dft.mode is 'skip'")
    if config.dft.mode == "slurm" and shutil.which("sbatch") is None:
        errors.append("dft.mode: 'slurm' needs sbatch, which is not found on this machine")
    if config.dft.mode == "cp2k":
        if problem := cp2k_problem(config.dft.cp2k):
            errors.append(f"dft.mode: 'cp2k': {problem}")
        if config.dft.cp2k_run.run_on == "slurm" and shutil.which("sbatch") is None:
            errors.append("dft.cp2k_run.run_on: 'slurm' needs sbatch, not found on this machine")
    if config.dask.cluster == "slurm" and shutil.which("sbatch") is None:
        errors.append("dask.cluster: 'slurm' needs sbatch, which is not found on this machine")
    return errors


def preflight(config: PipelineConfig) -> None:
    """Raise one :class:`ConfigError` listing every problem :func:`configuration_errors` finds."""
    errors = configuration_errors(config)
    if errors:
        raise ConfigError("the configuration cannot run:\n" + "\n".join(f"  - {e}" for e in errors))
