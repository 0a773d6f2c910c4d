"""The sampling output contract shared by every generative model.

A sampling run produces one :class:`SampleRecord` per requested sample, successful or not,
and :func:`write_samples` stores them under one directory:

``samples.parquet``
    One row per sample (failed ones included, with ``reason``): ``id``, ``model``, ``task``,
    ``status``, ``reason``, ``formula``, ``n_atoms``, ``spacegroup_requested``, ``extra``
    (JSON text) and ``structure`` (pymatgen JSON, empty when failed).
``samples.extxyz``
    The ``ok`` structures; each frame has ``info['id']``.
``cifs/<id>.cif``
    One CIF per ``ok`` structure.

Ids are stable: ``<model>-<seed>-<index>`` (see :func:`sample_id`). Crystals another
generator made enter the same contract through :func:`import_structure_set`, under the ids
their file gives them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pymatgen.core import Structure

from tasks.core.atomic import atomic_write
from tasks.core.records import structure_from_json, structure_to_json
from tasks.core.structure_io import read_structures, write_structures

SAMPLES_TABLE = "samples.parquet"
SAMPLES_EXTXYZ = "samples.extxyz"
CIF_DIR = "cifs"

SAMPLE_COLUMNS = [
    "id",
    "model",
    "task",
    "status",
    "reason",
    "formula",
    "n_atoms",
    "spacegroup_requested",
    "extra",
    "structure",
]


def sample_id(model: str, seed: int, index: int) -> str:
    """Stable id of the ``index``-th sample of a run: ``<model>-<seed>-<index:06d>``."""
    return f"{model}-{seed}-{index:06d}"


@dataclass
class SampleRecord:
    """One generated sample.

    Attributes
    ----------
    id
        Stable id (:func:`sample_id`).
    model
        ``mcflow`` or ``symadit``.
    task
        ``dng``, ``csp``, ``atg`` (or another task name of the model).
    status
        ``ok`` or ``failed``.
    reason
        Why the sample failed ("" when ok).
    formula
        Reduced formula of the generated (or requested) composition.
    n_atoms
        Atoms in the generated cell.
    spacegroup_requested
        Space group the sample was conditioned on, when the model takes one.
    extra
        Model-specific metadata (JSON-able): e.g. source structure id for CSP/ATG,
        Wyckoff labels for SymADiT.
    structure
        pymatgen JSON of the generated structure, or None when failed.
    """

    id: str
    model: str
    task: str
    status: Literal["ok", "failed"] = "ok"
    reason: str = ""
    formula: str = ""
    n_atoms: int = 0
    spacegroup_requested: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    structure: str | None = None

    @classmethod
    def from_structure(
        cls, id: str, model: str, task: str, structure: Structure, **kwargs: Any
    ) -> SampleRecord:
        """An ``ok`` record for ``structure``."""
        return cls(
            id=id,
            model=model,
            task=task,
            formula=structure.composition.reduced_formula,
            n_atoms=len(structure),
            structure=structure_to_json(structure),
            **kwargs,
        )

    @classmethod
    def failed(cls, id: str, model: str, task: str, reason: str, **kwargs: Any) -> SampleRecord:
        """A ``failed`` record with its reason."""
        return cls(id=id, model=model, task=task, status="failed", reason=reason, **kwargs)

    @classmethod
    def of(
        cls,
        id: str,
        model: str,
        task: str,
        structure: Structure | None,
        reason: str = "",
        **kwargs: Any,
    ) -> SampleRecord:
        """The record of one requested sample: ``ok`` with its structure, or ``failed`` with
        ``reason`` when there is none (the one path every model's sampler takes)."""
        if structure is None:
            return cls.failed(id, model, task, reason or "no structure", **kwargs)
        return cls.from_structure(id, model, task, structure, **kwargs)

    def to_structure(self) -> Structure:
        """The generated structure (raises ``ValueError`` for failed samples)."""
        if self.structure is None:
            raise ValueError(f"sample {self.id} has no structure ({self.reason})")
        return structure_from_json(self.structure)


def samples_to_frame(records: list[SampleRecord]) -> pd.DataFrame:
    """Records as the ``samples.parquet`` table."""
    rows = [
        {
            "id": r.id,
            "model": r.model,
            "task": r.task,
            "status": r.status,
            "reason": r.reason,
            "formula": r.formula,
            "n_atoms": int(r.n_atoms),
            "spacegroup_requested": r.spacegroup_requested,
            "extra": json.dumps(r.extra, sort_keys=True, default=str),
            "structure": r.structure or "",
        }
        for r in records
    ]
    frame = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    frame["spacegroup_requested"] = frame["spacegroup_requested"].astype("Int64")
    return frame


def read_samples(path: str | Path) -> list[SampleRecord]:
    """Read ``samples.parquet`` (or the directory holding it) back into records."""
    path = Path(path)
    if path.is_dir():
        path = path / SAMPLES_TABLE
    frame = pd.read_parquet(path)
    return [
        SampleRecord(
            id=row["id"],
            model=row["model"],
            task=row["task"],
            status=row["status"],
            reason=row["reason"],
            formula=row["formula"],
            n_atoms=int(row["n_atoms"]),
            spacegroup_requested=None
            if pd.isna(row["spacegroup_requested"])
            else int(row["spacegroup_requested"]),
            extra=json.loads(row["extra"]),
            structure=row["structure"] or None,
        )
        for row in frame.to_dict(orient="records")
    ]


def write_samples(out_dir: str | Path, records: list[SampleRecord]) -> dict[str, Path]:
    """Write the table, the extxyz file and one CIF per ok sample, each atomically.

    Parameters
    ----------
    out_dir
        Output directory (created if needed).
    records
        Every sample of the run, failed ones included.

    Returns
    -------
    dict[str, Path]
        ``{"table": ..., "extxyz": ..., "cifs": ...}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = [r.id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("sample ids are not unique")
    frame = samples_to_frame(records)
    table = atomic_write(out / SAMPLES_TABLE, lambda tmp: frame.to_parquet(tmp, index=False))
    ok = [(r.id, r.to_structure()) for r in records if r.status == "ok"]
    extxyz = write_structures(ok, out / SAMPLES_EXTXYZ)
    cifs = out / CIF_DIR
    cifs.mkdir(exist_ok=True)
    if ok:
        write_structures(ok, cifs)
    return {"table": table, "extxyz": extxyz, "cifs": cifs}


def import_structure_set(
    path: str | Path, model: str, out_dir: str | Path, limit: int | None = None
) -> Path:
    """Write another generator's crystals as a sampling run's output (``samples.parquet``).

    Every entry of the file becomes one record through the one structure reader: readable
    ones ``ok`` under their own id (a repeated id as ``<id>#<n>``), unreadable ones
    ``failed`` with the reader's reason, so validity counts them as the papers do.

    Parameters
    ----------
    path
        A CIF folder, extxyz, parquet or CSV file of structures.
    model
        The ``model`` field of the records (the run's label for that generator).
    out_dir
        Where ``samples.parquet``, ``samples.extxyz`` and ``cifs/`` are written.
    limit
        Keep only the first ``limit`` entries.

    Returns
    -------
    Path
        ``out_dir/samples.parquet``.
    """
    source = {"source": str(path)}
    records = [
        SampleRecord.from_structure(ident, model, "dng", structure, extra=source)
        if structure is not None
        else SampleRecord.failed(ident, model, "dng", reason, extra=source)
        for ident, structure, reason in read_structures(path, limit=limit)
    ]
    return write_samples(out_dir, records)["table"]
