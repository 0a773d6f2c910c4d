"""Typed configuration: pydantic models loaded from YAML with unknown keys forbidden.

Every stage defines its own config model (subclass of :class:`StrictModel`) next to the code
that uses it; :class:`tasks.pipeline.config.PipelineConfig` composes them. A typo, a
duplicated key or a bad value is a :class:`ConfigError` naming the file and the dotted key.

Fields that say *where or how fast* work runs, not *what* it computes (worker counts, chunk
sizes, cache folders, devices, time limits), are declared with :data:`Placement`::

    n_workers: Annotated[int, Placement] = Field(default=0, ge=0)

:func:`content_dump` and :func:`config_hash` leave exactly those fields out, so every cache
key and settings hash of the project ignores them; :func:`is_placement_parameter` applies
the same marker to function parameters (the Prefect stage tasks' ``cluster`` argument).
"""

from __future__ import annotations

import hashlib
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

from tasks.core.paths import CONFIGS_DIR

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file and key."""


class StrictModel(BaseModel):
    """Base for all config models: unknown keys are errors, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _PlacementMarker:
    """``Annotated`` metadata: the field or parameter says where/how fast, not what."""

    def __repr__(self) -> str:
        return "Placement"


#: Marker for placement-only fields and parameters (see the module docstring).
Placement = _PlacementMarker()


def is_placement(field: FieldInfo) -> bool:
    """Whether a pydantic field is declared placement-only."""
    return any(m is Placement for m in field.metadata)


def is_placement_parameter(fn: Callable[..., Any], name: str) -> bool:
    """Whether parameter ``name`` of ``fn`` is annotated ``Annotated[..., Placement]``."""
    hints = typing.get_type_hints(fn, include_extras=True)
    hint = hints.get(name)
    return typing.get_origin(hint) is typing.Annotated and any(
        m is Placement for m in getattr(hint, "__metadata__", ())
    )


def _content(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return content_dump(value)
    if isinstance(value, list | tuple):
        return [_content(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _content(v) for k, v in value.items()}
    return to_jsonable_python(value)


def content_dump(config: BaseModel) -> dict[str, Any]:
    """JSON-ready dump of a config without its placement-only fields (recursively)."""
    return {
        name: _content(getattr(config, name))
        for name, field in type(config).model_fields.items()
        if not is_placement(field)
    }


def config_hash(config: BaseModel) -> str:
    """Stable short hash of what a config computes (placement-only fields excluded)."""
    payload = json.dumps(content_dump(config), sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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


def resolve_config_path(name_or_path: str | Path, profiles: str = "") -> Path:
    """Accept a file path or a profile name from ``configs/<profiles>/``.

    ``quick`` → ``configs/quick.yaml``; with ``profiles="mcflow"``, ``tiny`` →
    ``configs/mcflow/tiny.yaml``.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    folder = CONFIGS_DIR / profiles if profiles else CONFIGS_DIR
    candidate = folder / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a profile in {folder}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} on line {line} (first on line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file safely (no object construction), refusing duplicate keys."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None


def load_config(
    name_or_path: str | Path,
    model: type[M],
    overrides: dict[str, Any] | None = None,
    profiles: str = "",
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
    profiles
        The folder of ``configs/`` that profile names are looked up in (``mcflow``).

    Raises
    ------
    ConfigError
        The file is missing, not YAML, repeats a key, or does not validate (the message
        names the file, the dotted key and, for repeated keys, the line).
    """
    path = resolve_config_path(name_or_path, profiles)
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        set_dotted(data, dotted, value)
    return validate_config(data, model, source=str(path))


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating sections."""
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: '{key}' is not a section")
    node[leaf] = value
