"""The DFT work directory: one folder per calculation, with typed records of what and where.

A work directory (on a filesystem shared by the login and the compute nodes) holds::

    config.json                      last stage configuration used to submit
    rejected.json                    candidates refused before any calculation (bad input,
                                     no basis data, the same structure as another candidate)
    .lock                            held while a process here computes the calculations
    calcs/<calc_id>/calc.json        CalcInput: candidate id, structure, settings (written once)
    calcs/<calc_id>/state.json       CalcState: submitted | running | completed | failed
    calcs/<calc_id>/attempt-<n>/     jobflow run directories of attempt n
    store/<calc_id>-<n>.json         maggma JSONStore of attempt n (jobflow job outputs)
    store/<calc_id>-<n>.data.json    its "data" additional store (large VASP objects)
    batches/<batch_id>.json          DftBatch: the array's calc ids in order, its settings
    batches/<batch_id>.sbatch        the rendered job script; .jobid: SLURM job id
    logs/<jobid>_<index>.out         job output

``calc_id`` is ``<structure hash>-<settings hash>``: submitting the same crystal with the
same settings again finds the existing calculation instead of starting a second one. Each
calculation writes its own store file, so concurrent array tasks never write the same file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from jobflow import JobStore
from maggma.stores import JSONStore
from pydantic import BaseModel, ConfigDict
from pymatgen.core import Structure

from tasks.core.atomic import write_json_atomic
from tasks.core.documents import StageDocument
from tasks.core.records import structure_hash
from tasks.dft.settings import CalcSettings, settings_hash

SUBMITTED: Final = "submitted"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
ACTIVE = frozenset({SUBMITTED, RUNNING})
CalcStatusName = Literal["submitted", "running", "completed", "failed"]

_REASON_LIMIT = 2000


@dataclass
class Candidate:
    """A crystal handed to the DFT stage; ``structure`` is ``None`` when the input was bad."""

    id: str
    structure: Structure | None
    reason: str = ""


class CalcInput(BaseModel):
    """``calc.json``: what a calculation computes (written once)."""

    model_config = ConfigDict(extra="forbid")

    calc_id: str
    candidate_id: str
    formula: str
    structure_hash: str
    settings_hash: str
    structure: str
    settings: dict[str, Any]


class CalcState(BaseModel):
    """``state.json``: where a calculation is (replaced atomically on every change)."""

    model_config = ConfigDict(extra="ignore")

    status: CalcStatusName
    reason: str = ""
    attempt: int = 1
    batch: str = ""
    index: int = 0
    host: str = ""
    slurm_id: str = ""
    updated: float = 0.0


def calc_dir(workdir: Path, calc_id: str) -> Path:
    """Directory of one calculation."""
    return Path(workdir) / "calcs" / calc_id


def store_paths(workdir: Path, calc_id: str, attempt: int) -> tuple[Path, Path]:
    """The JSONStore files (documents, data) of one attempt of a calculation."""
    base = Path(workdir) / "store" / f"{calc_id}-{attempt}"
    return base.with_suffix(".json"), base.with_suffix(".data.json")


def open_job_store(workdir: Path, calc_id: str, attempt: int, read_only: bool) -> JobStore:
    """The jobflow ``JobStore`` (maggma ``JSONStore`` files) of one attempt."""
    docs, data = store_paths(workdir, calc_id, attempt)
    docs.parent.mkdir(parents=True, exist_ok=True)
    return JobStore(
        JSONStore(str(docs), read_only=read_only, key="uuid"),
        additional_stores={"data": JSONStore(str(data), read_only=read_only, key="blob_uuid")},
    )


def write_calc(workdir: Path, calc: CalcInput) -> Path:
    """Write a calculation's ``calc.json``."""
    return write_json_atomic(calc_dir(workdir, calc.calc_id) / "calc.json", calc.model_dump())


def read_calc(workdir: Path, calc_id: str) -> CalcInput:
    """The immutable description of a calculation (``calc.json``)."""
    text = (calc_dir(workdir, calc_id) / "calc.json").read_text()
    return CalcInput.model_validate_json(text)


def read_state(workdir: Path, calc_id: str) -> CalcState | None:
    """The state of a calculation (``state.json``), or ``None`` before it was submitted."""
    path = calc_dir(workdir, calc_id) / "state.json"
    return CalcState.model_validate_json(path.read_text()) if path.exists() else None


def write_state(workdir: Path, calc_id: str, status: CalcStatusName, **fields: Any) -> CalcState:
    """Atomically replace a calculation's state, keeping the fields not given."""
    previous = read_state(workdir, calc_id)
    data = (previous.model_dump() if previous else {}) | fields
    data |= {"status": status, "updated": time.time()}
    data["reason"] = str(data.get("reason", ""))[-_REASON_LIMIT:]
    state = CalcState.model_validate(data)
    write_json_atomic(calc_dir(workdir, calc_id) / "state.json", state.model_dump())
    return state


def list_calcs(workdir: Path) -> list[str]:
    """Ids of all calculations in a work directory."""
    root = Path(workdir) / "calcs"
    return sorted(p.parent.name for p in root.glob("*/calc.json")) if root.exists() else []


def calc_id_for(candidate: Candidate, settings: CalcSettings) -> str:
    """``<structure hash>-<settings hash>``: the idempotency key of a calculation."""
    if candidate.structure is None:
        raise ValueError(f"candidate {candidate.id} has no structure: {candidate.reason}")
    return structure_hash(candidate.structure) + _settings_suffix(settings)


def made_with(calc_id: str, settings: CalcSettings) -> bool:
    """Whether the calculation ``calc_id`` was (or will be) made with ``settings``."""
    return calc_id.endswith(_settings_suffix(settings))


def _settings_suffix(settings: CalcSettings) -> str:
    """The part of every calculation id that names its settings."""
    return f"-{settings_hash(settings)}"


def load_outputs(workdir: str | Path, calc_id: str, attempt: int) -> list[dict[str, Any]]:
    """Job documents of one attempt, newest first (each ``output`` is a TaskDoc dict)."""
    docs, _ = store_paths(Path(workdir), calc_id, attempt)
    if not docs.exists():
        return []
    store = JSONStore(str(docs), read_only=True, key="uuid")
    store.connect()
    try:
        found = list(store.query({"metadata.calc_id": calc_id}))
    finally:
        store.close()
    return sorted(found, key=lambda d: str(d.get("completed_at", "")), reverse=True)


class DftBatch(StageDocument):
    """One SLURM array of calculations (``batches/<batch id>.json``): task ``i`` of the
    array runs ``calc_ids[i]`` (:func:`tasks.dft.node.run_batch_task`)."""

    batch_id: str
    calc_ids: list[str]
    settings: CalcSettings


#: The lock a process holds while it computes a work directory's calculations here.
LOCK = ".lock"


def read_rejected(workdir: Path) -> dict[str, str]:
    """Candidates refused before any calculation, with the reason (``rejected.json``)."""
    path = Path(workdir) / "rejected.json"
    return json.loads(path.read_text()) if path.exists() else {}
