"""Typed configuration: pydantic models loaded from YAML with unknown keys forbidden.

Every stage defines its own config model (subclass of :class:`StrictModel`) next to the code
that uses it; :class:`tasks.pipeline_config.PipelineConfig` composes them. A typo or a bad
value is a :class:`ConfigError` naming the file and the dotted key.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.paths import CONFIGS_DIR

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file and key."""


class StrictModel(BaseModel):
    """Base for all config models: unknown keys are errors, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatasetSource(StrictModel):
    """Where a dataset comes from.

    ``kind``:
    - ``csv``: a CSV (optionally gzipped) with a ``cif`` column and optional id column;
    - ``cif_dir``: a folder of ``*.cif`` files (the file stem is the id);
    - ``extxyz``: an extended-XYZ file (frame ``id`` info key, else the frame index);
    - ``canonical``: one of the canonical MP-20 / MPTS-52 splits (``name`` such as
      ``mp_20/train``), read from ``path`` if given, else downloaded and verified by sha256;
    - ``materials_project``: a Materials Project query through ``mp-api``.
    """

    kind: Literal["csv", "cif_dir", "extxyz", "canonical", "materials_project"] = "csv"
    path: Path | None = None
    name: str | None = None
    id_column: str = "material_id"
    limit: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_required(self) -> DatasetSource:
        if self.kind in ("csv", "cif_dir", "extxyz") and self.path is None:
            raise ValueError(f"source kind {self.kind!r} needs a 'path'")
        if self.kind == "canonical" and not self.name:
            raise ValueError("source kind 'canonical' needs a 'name' such as 'mp_20/train'")
        return self


class IngestConfig(StrictModel):
    """Settings of the ingestion stage (parsing, reduction and symmetry analysis)."""

    symprec: float = Field(default=0.1, gt=0, description="spglib/pymatgen symmetry tolerance (Å)")
    angle_tolerance: float = Field(default=5.0, gt=0, description="spglib angle tolerance (deg)")
    pyxtal_tol: float = Field(default=0.1, gt=0, description="pyxtal from_seed tolerance (Å)")
    primitive_tol: float = Field(
        default=0.01,
        gt=0,
        description="site tolerance (Å) of the primitive-cell search; pymatgen's default 0.25 "
        "merges distorted cells into smaller idealized ones (1.4% of MP-20 val)",
    )
    min_distance: float = Field(default=0.5, ge=0, description="reject atoms closer than this (Å)")
    max_atoms: int = Field(default=200, gt=0, description="reject primitive cells larger than this")
    n_workers: int = Field(default=0, ge=0, description="worker processes; 0 = all cores")
    chunk_size: int = Field(default=64, gt=0)
    cache_dir: Path | None = Field(default=None, description="analysis cache; default data/cache")
    plots: bool = True


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"  - key '{key}': {item['msg']}")
    return "\n".join(lines)


def validate_config(data: dict[str, Any], model: type[M], source: str = "<dict>") -> M:
    """Validate a mapping into ``model``; raise :class:`ConfigError` naming ``source`` and keys."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def resolve_config_path(name_or_path: str | Path) -> Path:
    """Accept a file path or a profile name from ``configs/`` (``quick`` → configs/quick.yaml)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    candidate = CONFIGS_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ConfigError(
        f"config {str(name_or_path)!r} is neither a file nor a profile in {CONFIGS_DIR}"
    )


def load_config(
    name_or_path: str | Path,
    model: type[M],
    overrides: dict[str, Any] | None = None,
) -> M:
    """Load a YAML file (or a profile name) into a typed config.

    Parameters
    ----------
    name_or_path
        A YAML path or the name of a profile in ``configs/``.
    model
        The pydantic model to validate into (e.g. ``PipelineConfig``).
    overrides
        Dotted-key overrides applied after loading, e.g. ``{"ingest.symprec": 0.01}``.
    """
    path = resolve_config_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return validate_config(data, model, source=str(path))


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: '{key}' is not a section")
    node[leaf] = value


def config_hash(config: BaseModel) -> str:
    """Stable short hash of a config's content (used in cache keys and run metadata)."""
    payload = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
