"""Reading and writing sets of structures in the formats the pipeline exchanges.

Supported inputs (chosen by the path): a folder of ``*.cif`` files (the file stem is the
id), a single ``.cif`` file, an extended-XYZ file (``.extxyz`` / ``.xyz``; frame ``id`` info
key, else ``<stem>:<frame index>``), a processed dataset (``.parquet`` of
:class:`tasks.records.CrystalRecord` rows, or any parquet with ``id`` and a ``structure``
(pymatgen JSON) or ``cif`` column) and a CSV (optionally gzipped) with a ``cif`` column.

Reading never raises for bad content: each entry comes back as ``(id, structure, reason)``
where ``structure`` is ``None`` and ``reason`` says why when the entry could not be read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure

from tasks.atomic import atomic_write, write_text_atomic
from tasks.records import STATUS_OK, CrystalRecord, structure_to_json, write_records

logger = logging.getLogger(__name__)

#: One entry of a structure set: ``(id, structure or None, reason; "" when readable)``.
ReadResult = tuple[str, Structure | None, str]

EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
CSV_SUFFIXES = (".csv", ".csv.gz")


def _parse_cif_text(text: str) -> tuple[Structure | None, str]:
    if not text or not text.strip():
        return None, "empty CIF"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception as err:  # pymatgen raises many types for malformed CIFs
        return None, f"malformed CIF: {type(err).__name__}: {err}"[:300]
    if len(structure) == 0:
        return None, "CIF has no sites"
    return structure, ""


def _read_cif_file(path: Path) -> ReadResult:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        return path.stem, None, f"unreadable file: {err}"
    structure, reason = _parse_cif_text(text)
    return path.stem, structure, reason


def _read_cif_dir(path: Path) -> list[ReadResult]:
    return [_read_cif_file(p) for p in sorted(path.glob("*.cif"))]


def _read_extxyz(path: Path) -> list[ReadResult]:
    from ase.io import read as ase_read
    from pymatgen.io.ase import AseAtomsAdaptor

    if path.stat().st_size == 0:
        return [(path.stem, None, "empty file")]
    try:
        frames = ase_read(path, index=":", format="extxyz")
    except Exception as err:
        return [(path.stem, None, f"malformed extxyz: {type(err).__name__}: {err}"[:300])]
    out: list[ReadResult] = []
    for i, atoms in enumerate(frames):
        ident = str(atoms.info.get("id", f"{path.stem}:{i}"))
        if len(atoms) == 0:
            out.append((ident, None, "frame has no atoms"))
        elif not all(atoms.pbc):
            out.append((ident, None, "frame is not periodic in 3D"))
        else:
            try:
                out.append((ident, AseAtomsAdaptor.get_structure(atoms), ""))
            except Exception as err:
                out.append((ident, None, f"bad frame: {type(err).__name__}: {err}"[:300]))
    return out


def _structure_from_json_text(text: str) -> tuple[Structure | None, str]:
    if not isinstance(text, str) or not text:
        return None, "empty structure field"
    try:
        return Structure.from_dict(json.loads(text)), ""
    except Exception as err:
        return None, f"malformed structure JSON: {type(err).__name__}: {err}"[:300]


def _read_frame(
    frame: pd.DataFrame, default_ids: list[str], id_columns: tuple[str, ...]
) -> list[ReadResult]:
    """Entries of a table; ids from the first of ``id_columns`` that is present and filled."""
    ids = default_ids
    for column in id_columns:
        if column in frame.columns and frame[column].astype(str).str.len().gt(0).all():
            ids = [str(v) for v in frame[column]]
            break
    if "structure" in frame.columns:
        parse, column = _structure_from_json_text, "structure"
    elif "cif" in frame.columns:
        parse, column = _parse_cif_text, "cif"
    else:
        raise ValueError("table has neither a 'structure' nor a 'cif' column")
    statuses = frame["status"] if "status" in frame.columns else [STATUS_OK] * len(frame)
    reasons = frame["reason"] if "reason" in frame.columns else [""] * len(frame)
    out: list[ReadResult] = []
    for ident, text, status, reason in zip(ids, frame[column], statuses, reasons, strict=True):
        if status != STATUS_OK:
            out.append((ident, None, f"record status {status}: {reason}"))
            continue
        structure, why = parse(text)
        out.append((ident, structure, why))
    return out


def read_structures(
    path: str | Path, id_column: str = "material_id", limit: int | None = None
) -> list[ReadResult]:
    """Read a set of structures, one ``(id, structure | None, reason)`` per entry.

    Parameters
    ----------
    path
        A folder of CIF files, a ``.cif``, ``.extxyz``/``.xyz``, ``.parquet`` or
        ``.csv``/``.csv.gz`` file.
    id_column
        Column holding the id in CSV tables (falls back to ``id``, then ``<stem>:<row>``);
        parquet files use ``id`` first (the CrystalRecord id), then this column.
    limit
        Keep only the first ``limit`` entries.

    Returns
    -------
    list of (str, Structure | None, str)
        Unreadable entries have ``None`` and a reason; readable ones an empty reason.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the format is not recognised or a table lacks a structure column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such structure set: {path}")
    name = path.name.lower()
    if path.is_dir():
        out = _read_cif_dir(path)
    elif name.endswith(".cif"):
        out = [_read_cif_file(path)]
    elif name.endswith(EXTXYZ_SUFFIXES):
        out = _read_extxyz(path)
    elif name.endswith(".parquet"):
        frame = pd.read_parquet(path)
        ids = [f"{path.stem}:{i}" for i in range(len(frame))]
        out = _read_frame(frame, ids, ("id", id_column))
    elif name.endswith(CSV_SUFFIXES):
        frame = pd.read_csv(path, nrows=limit)
        stem = path.name.split(".")[0]
        out = _read_frame(frame, [f"{stem}:{i}" for i in range(len(frame))], (id_column, "id"))
    else:
        raise ValueError(f"unrecognised structure set format: {path}")
    n_bad = sum(1 for _, s, _ in out if s is None)
    logger.info("read %d entries from %s (%d unreadable)", len(out), path, n_bad)
    return out[:limit] if limit is not None else out


def dataset_fingerprint(path: str | Path) -> str:
    """Content hash of a structure set, for cache keys.

    A file hashes its bytes only (a renamed copy has the same fingerprint); a folder hashes
    every file's relative path and bytes.
    """
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def write_structures(
    items: Sequence[tuple[str, Structure]], path: str | Path, source: str = "structures"
) -> Path:
    """Write ``(id, structure)`` pairs in the format implied by ``path``.

    Parameters
    ----------
    items
        Ids and structures to write.
    path
        A ``.extxyz`` file (frames carry ``info['id']``), a ``.parquet`` file (CrystalRecord
        rows, readable by :func:`tasks.records.read_records`), or any other path, taken as a
        folder that receives one ``<id>.cif`` per structure (``/`` and ``:`` in ids become
        ``_``).
    source
        The ``source`` field of parquet records.

    Returns
    -------
    Path
        ``path``. Every file is written atomically.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(EXTXYZ_SUFFIXES):
        from ase.io import write as ase_write
        from pymatgen.io.ase import AseAtomsAdaptor

        frames = []
        for ident, structure in items:
            atoms = AseAtomsAdaptor.get_atoms(structure)
            atoms.info["id"] = ident
            frames.append(atoms)
        return atomic_write(path, lambda tmp: ase_write(tmp, frames, format="extxyz"))
    if name.endswith(".parquet"):
        records = [
            CrystalRecord(
                id=ident,
                source=source,
                formula=structure.composition.reduced_formula,
                n_atoms=len(structure),
                n_elements=len(structure.composition.elements),
                structure=structure_to_json(structure),
            )
            for ident, structure in items
        ]
        return write_records(records, path)
    from pymatgen.io.cif import CifWriter

    path.mkdir(parents=True, exist_ok=True)
    for ident, structure in items:
        safe = ident.replace("/", "_").replace(":", "_")
        write_text_atomic(path / f"{safe}.cif", str(CifWriter(structure)))
    return path
