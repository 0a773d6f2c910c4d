"""How the discovery graph's stage tasks are cached: on the content of what they depend on.

A stage's cache key is its name plus a digest of every parameter except those annotated
``Annotated[..., Placement]`` (where work runs: the Dask cluster, a deployment): configs by
:func:`tasks.core.config.config_hash` (which itself skips placement-only fields), files by
their bytes, anything else by value. Stage tasks take only their own config section, so a
key says exactly what the stage depends on.

A cached result is only trusted when the files it names still exist: :func:`run_stage`
reruns a stage whose outputs were deleted (the stage functions are resumable, so the rerun
redoes only what is missing).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from prefect import Task, task
from prefect.context import TaskRunContext
from pydantic import BaseModel

from tasks.core.config import config_hash, is_placement_parameter

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def digest(value: Any) -> str:
    """Content digest of a stage input: configs by content, files by bytes, else by value."""
    if isinstance(value, BaseModel):
        return config_hash(value)
    if isinstance(value, str | Path) and Path(value).is_file():
        return hashlib.sha256(Path(value).read_bytes()).hexdigest()[:16]
    if isinstance(value, list | tuple):
        return digest("|".join(digest(v) for v in value))
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """Cache key of a stage: its name plus the digests of all its non-placement inputs."""
    fn = context.task.fn
    parts = [context.task.name] + [
        f"{k}={digest(v)}"
        for k, v in sorted(parameters.items())
        if not is_placement_parameter(fn, k)
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def stage(name: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorator of a stage task: cached on :func:`input_cache_key`, results persisted."""
    return task(name=name, cache_key_fn=input_cache_key, persist_result=True)


def _missing_outputs(result: Any) -> list[str]:
    """Paths named by a stage's result (a path or a dict of paths) that no longer exist."""
    values = result.values() if isinstance(result, dict) else [result]
    return [str(v) for v in values if isinstance(v, str | Path) and not Path(v).exists()]


def run_stage(stage: Task, *args: Any, **kwargs: Any) -> Any:
    """Call a cached stage task; rerun it when its cached result names deleted files."""
    result = stage(*args, **kwargs)
    missing = _missing_outputs(result)
    if missing:
        log.warning("stage %s: cached outputs are gone (%s); recomputing", stage.name, missing[0])
        result = stage.with_options(refresh_cache=True)(*args, **kwargs)
    return result
