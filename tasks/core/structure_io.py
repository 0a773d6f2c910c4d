"""THE reader and writer of structure sets: every stage reads crystals through this module.

Inputs (chosen by the path):

- a folder of CIF files (``*.cif`` in any letter case), or one CIF file: one entry per
  data block (id: the file stem, or ``<stem>:<block name>`` when a file holds several);
- an extended-XYZ file (``.extxyz`` / ``.xyz``), read frame by frame (id: the frame's
  ``id`` info key, else ``<stem>:frame-<k>``); a truncated or malformed frame is one
  unreadable entry, the others are read;
- a table: ``.parquet`` (crystal records, sample tables, relaxation results, reference
  energy tables) or ``.csv`` / ``.csv.gz`` with a ``structure`` (pymatgen JSON), ``cif`` or
  ``crystal`` column (the compact text of :func:`compact_text`: lattice, atomic numbers and
  fractional coordinates to 4 decimals, a tenth of the size of pymatgen JSON).

Ids of tables follow **one ranking of id columns**, :data:`ID_COLUMNS` (``id``, then
``material_id``), after an explicitly requested column; a row with an empty id gets the
stable generated id ``<stem>:row-<k>``. A later entry that repeats an id is read all the
same under ``<id>#<n>``, with a warning (in every format).

Reading never raises for bad content: :func:`read_entries` returns one
:class:`StructureEntry` per input entry (``reason`` says why it is unusable), and
:func:`read_structures` parses them into ``(id, structure or None, reason)``. A missing
path, an unknown format or a table without a structure column raise, because those are
mistakes in the call, not in the data.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import itertools
import json
import logging
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from tasks.core.atomic import atomic_write, write_text_atomic
from tasks.core.checks import MAX_ABS_FRACTIONAL, MAX_LATTICE_LENGTH
from tasks.core.records import STATUS_OK, CrystalRecord, structure_to_json, write_records

logger = logging.getLogger(__name__)

#: One parsed entry of a structure set: ``(id, structure or None, reason; "" when readable)``.
ReadResult = tuple[str, Structure | None, str]
Format = Literal["cif", "json", "extxyz", "compact"]

#: The ranking of id columns of every table the pipeline reads.
ID_COLUMNS = ("id", "material_id")
#: Columns that may hold a reduced formula (read without parsing the structure).
FORMULA_COLUMNS = ("formula", "pretty_formula")
EXTXYZ_SUFFIXES = (".extxyz", ".xyz")
CSV_SUFFIXES = (".csv", ".csv.gz")
_SURROGATE = re.compile("[\udc80-\udcff]")
_DATA_BLOCK = re.compile(r"^data_", re.IGNORECASE | re.MULTILINE)
_NON_UTF8 = "non-UTF-8 bytes in the input"


@dataclass(frozen=True)
class StructureEntry:
    """One entry of a structure set, not parsed yet.

    Attributes
    ----------
    id
        Stable id (see the module docstring).
    payload
        The entry's text: a CIF data block, pymatgen JSON or one extxyz frame; ``""`` when
        there is nothing to parse.
    fmt
        How ``payload`` is parsed.
    reason
        Why the entry is unusable before parsing (``""`` when it has a payload).
    formula
        Reduced formula from the table's formula column, if it has one.
    """

    id: str
    payload: str = ""
    fmt: Format = "cif"
    reason: str = ""
    formula: str = ""

    def parse(self) -> tuple[Structure | None, str]:
        """The structure, or ``None`` and the reason it cannot be read."""
        if self.reason:
            return None, self.reason
        try:
            return parse_payload(self.payload, self.fmt), ""
        except ValueError as err:
            return None, str(err)


def parse_payload(payload: str, fmt: Format) -> Structure:
    """Parse one entry's text.

    Raises
    ------
    ValueError
        With the reason: empty, malformed, not periodic, no sites.
    """
    if not payload or not payload.strip():
        raise ValueError("empty input")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt == "cif":
                _check_cif_numbers(payload)
                structure = Structure.from_str(payload, fmt="cif")
            elif fmt == "json":
                structure = Structure.from_dict(json.loads(payload))
            elif fmt == "compact":
                data = json.loads(payload)
                structure = Structure(data["l"], data["z"], data["f"])
            else:
                structure = _frame_structure(payload)
    except _NotACrystalError:
        raise
    except Exception as err:  # the parsers raise many types for malformed input
        first = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"malformed {fmt}: {type(err).__name__}: {first}"[:300]) from None
    if len(structure) == 0:
        raise ValueError(f"{fmt} input has no sites")
    return structure


class _NotACrystalError(ValueError):
    """The input parsed, but is not a periodic crystal (the message says why)."""


_CIF_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_CIF_LENGTHS = ("_cell_length_a", "_cell_length_b", "_cell_length_c")
_CIF_FRACTIONS = ("_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z")


def _cif_values(block: dict[str, Any], keys: Sequence[str]) -> list[float]:
    out = []
    for key in keys:
        raw = block.get(key, [])
        for text in raw if isinstance(raw, list) else [raw]:
            found = _CIF_NUMBER.match(str(text).strip())
            if found:
                out.append(float(found.group(0)))
    return out


def _check_cif_numbers(text: str) -> None:
    """Refuse a CIF whose raw cell or coordinates are corrupted, before pymatgen parses it.

    pymatgen's CIF parser wraps fractional coordinates (a coordinate of 1e30 becomes 0 and
    the crystal looks fine) and searches neighbours in the cell (a cell of 1e8 Å exhausts
    memory), so the limits of :mod:`tasks.core.checks` are applied to the raw numbers.
    """
    from pymatgen.io.cif import CifFile

    for block in CifFile.from_str(text).data.values():
        lengths = _cif_values(block.data, _CIF_LENGTHS)
        if any(not math.isfinite(v) or v > MAX_LATTICE_LENGTH for v in lengths):
            raise _NotACrystalError(
                f"lattice vector of {max(lengths):.4g} Å exceeds {MAX_LATTICE_LENGTH:g} Å"
            )
        fractions = _cif_values(block.data, _CIF_FRACTIONS)
        if any(not math.isfinite(v) or abs(v) > MAX_ABS_FRACTIONAL for v in fractions):
            largest = max(abs(v) for v in fractions)
            raise _NotACrystalError(
                f"fractional coordinate {largest:.4g} is far outside the cell "
                f"(limit ±{MAX_ABS_FRACTIONAL:g})"
            )


def _frame_structure(text: str) -> Structure:
    from ase.io import read as ase_read
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = ase_read(io.StringIO(text), format="extxyz", index=0)
    assert not isinstance(atoms, list)  # index=0: one frame
    if len(atoms) == 0:
        raise _NotACrystalError("frame has no atoms")
    if not all(atoms.pbc) or atoms.cell.rank < 3:
        raise _NotACrystalError("frame is not periodic in 3D")
    return AseAtomsAdaptor.get_structure(atoms)


# --- CIF ---------------------------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, str]:
    """Text of a file's bytes and ``""``, or the replacement-decoded text and a reason."""
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), _NON_UTF8


def _block_name(block: str) -> str:
    found = re.search(r"^data_(\S*)", block, re.IGNORECASE | re.MULTILINE)
    return found.group(1) if found else ""


def split_cif_blocks(text: str) -> list[tuple[str, str]]:
    """``(block name, text)`` of every ``data_`` block (comments before the first kept)."""
    starts = [m.start() for m in _DATA_BLOCK.finditer(text)]
    if len(starts) <= 1:
        return [(_block_name(text), text)]
    bounds = [0, *starts[1:], len(text)]
    return [(_block_name(text[a:b]), text[a:b]) for a, b in itertools.pairwise(bounds)]


def _file_text(path: Path) -> tuple[str, StructureEntry | None]:
    """A file's text, or ``("", the file's one unusable entry)`` when it cannot be read."""
    try:
        text, reason = _decode(path.read_bytes())
    except OSError as err:
        return "", StructureEntry(path.stem, reason=f"unreadable file: {err}")
    return text, StructureEntry(path.stem, reason=reason) if reason else None


def _cif_file_entries(path: Path) -> list[StructureEntry]:
    text, unusable = _file_text(path)
    if unusable is not None:
        return [unusable]
    blocks = split_cif_blocks(text)
    if len(blocks) == 1:
        return [StructureEntry(path.stem, blocks[0][1], "cif")]
    return [
        StructureEntry(f"{path.stem}:{name or f'block-{k}'}", block, "cif")
        for k, (name, block) in enumerate(blocks)
    ]


def _is_cif(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".cif"


# --- extxyz ------------------------------------------------------------------------------


def split_extxyz_frames(text: str) -> Iterator[tuple[str, str]]:
    """``(frame text, reason)`` per frame of an extended-XYZ text; a bad count ends the file."""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        head = lines[i].strip()
        try:
            n_atoms = int(head)
        except ValueError:
            yield "", f"expected an atom count, found {head[:40]!r} (line {i + 1})"
            return
        frame = lines[i : i + n_atoms + 2]
        if len(frame) < n_atoms + 2 or any(not ln.strip() for ln in frame[2:]):
            yield "".join(frame), f"truncated frame: {n_atoms} atoms announced (line {i + 1})"
            return
        yield "".join(frame), ""
        i += n_atoms + 2


_FRAME_ID = re.compile(r"""(?:^|\s)id=(?:"([^"]*)"|(\S+))""")


def _extxyz_entries(path: Path) -> list[StructureEntry]:
    text, unusable = _file_text(path)
    if unusable is not None:
        return [unusable]
    out = []
    for k, (frame, why) in enumerate(split_extxyz_frames(text)):
        comment = frame.splitlines()[1] if frame.count("\n") >= 1 else ""
        found = _FRAME_ID.search(comment)
        ident = (found.group(1) or found.group(2)) if found else f"{path.stem}:frame-{k}"
        out.append(StructureEntry(ident, frame if not why else "", "extxyz", why))
    if not out:
        return [StructureEntry(path.stem, reason="empty file")]
    return out


# --- tables ------------------------------------------------------------------------------


@contextlib.contextmanager
def _large_csv_fields() -> Iterator[None]:
    previous = csv.field_size_limit()
    csv.field_size_limit(1 << 30)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _csv_table(path: Path) -> pd.DataFrame:
    """A CSV (optionally gzipped) as strings; undecodable bytes kept as surrogates."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        text = handle.read().decode("utf-8", errors="surrogateescape")
    with _large_csv_fields():
        rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        return pd.DataFrame()
    header, body = rows[0], rows[1:]
    width = len(header)
    body = [(r + [""] * width)[:width] for r in body]
    return pd.DataFrame(body, columns=header, dtype=object)


def _table_stem(path: Path) -> str:
    return path.name.split(".")[0]


def _clean(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).strip()


def _table_entries(frame: pd.DataFrame, stem: str, id_column: str | None) -> list[StructureEntry]:
    fmt: Format
    if "structure" in frame.columns:
        column, fmt = "structure", "json"
    elif "cif" in frame.columns:
        column, fmt = "cif", "cif"
    elif "crystal" in frame.columns:
        column, fmt = "crystal", "compact"
    else:
        raise ValueError(
            f"table {stem} has no 'structure', 'cif' or 'crystal' column "
            f"(columns: {list(frame.columns)[:12]})"
        )
    ranking = [c for c in ((id_column,) if id_column else ()) + ID_COLUMNS if c]
    id_col = next((c for c in ranking if c in frame.columns), None)
    formula_col = next((c for c in FORMULA_COLUMNS if c in frame.columns), None)
    n = len(frame)
    ids = [_clean(v) for v in frame[id_col]] if id_col else [""] * n
    payloads = list(frame[column])
    statuses = list(frame["status"]) if "status" in frame.columns else [STATUS_OK] * n
    reasons = list(frame["reason"]) if "reason" in frame.columns else [""] * n
    formulas = [_clean(v) for v in frame[formula_col]] if formula_col else [""] * n
    out = []
    for k in range(n):
        ident = ids[k] or f"{stem}:row-{k}"
        text = payloads[k] if isinstance(payloads[k], str) else ""
        why = ""
        status = _clean(statuses[k])
        if status and status != STATUS_OK:
            why = f"record status {status}: {_clean(reasons[k])}"
        if not why and (_SURROGATE.search(text) or _SURROGATE.search(ident)):
            why = _NON_UTF8
            ident = _SURROGATE.sub("?", ident)
            text = ""
        if not why and not text.strip():
            why = f"empty {column} field"
        out.append(StructureEntry(ident, "" if why else text, fmt, why, formulas[k]))
    return out


def _deduplicate(entries: list[StructureEntry]) -> list[StructureEntry]:
    """Give a repeated id a unique one: the later entries become ``<id>#<n>``, still read.

    A generator's file that repeats an id holds one crystal per entry all the same: each is
    kept (dropping it would lower validity), and a warning names the ids.
    """
    seen: dict[str, int] = {}
    taken = {entry.id for entry in entries}
    out = []
    renamed = []
    for entry in entries:
        if entry.id not in seen:
            seen[entry.id] = 1
            out.append(entry)
            continue
        ident = entry.id
        while ident in taken:
            seen[entry.id] += 1
            ident = f"{entry.id}#{seen[entry.id]}"
        taken.add(ident)
        renamed.append(ident)
        out.append(replace(entry, id=ident))
    if renamed:
        logger.warning(
            "%d entries repeat an earlier id and are read as <id>#<n>: %s%s",
            len(renamed),
            ", ".join(renamed[:5]),
            ", ..." if len(renamed) > 5 else "",
        )
    return out


def read_entries(
    path: str | Path, id_column: str | None = None, limit: int | None = None
) -> list[StructureEntry]:
    """Every entry of a structure set, unparsed, one per input entry.

    Parameters
    ----------
    path
        A folder of CIF files, a ``.cif``, ``.extxyz``/``.xyz``, ``.parquet`` or
        ``.csv``/``.csv.gz`` file.
    id_column
        A table column to take ids from before the standard ranking :data:`ID_COLUMNS`.
    limit
        Keep only the first ``limit`` entries.

    Returns
    -------
    list of StructureEntry
        In input order; ids unique.

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
        files = sorted(p for p in path.iterdir() if _is_cif(p))
        entries = [e for f in files for e in _cif_file_entries(f)]
    elif name.endswith(".cif"):
        entries = _cif_file_entries(path)
    elif name.endswith(EXTXYZ_SUFFIXES):
        entries = _extxyz_entries(path)
    elif name.endswith(".parquet"):
        entries = _table_entries(pd.read_parquet(path), _table_stem(path), id_column)
    elif name.endswith(CSV_SUFFIXES):
        entries = _table_entries(_csv_table(path), _table_stem(path), id_column)
    else:
        raise ValueError(
            f"unrecognised structure set format: {path} "
            "(use a CIF folder, .cif, .extxyz, .parquet or .csv[.gz])"
        )
    entries = _deduplicate(entries[:limit] if limit is not None else entries)
    logger.info(
        "read %d entries from %s (%d unusable before parsing)",
        len(entries),
        path,
        sum(bool(e.reason) for e in entries),
    )
    return entries


def read_structures(
    path: str | Path, id_column: str | None = None, limit: int | None = None
) -> list[ReadResult]:
    """Read and parse a structure set: one ``(id, structure | None, reason)`` per entry.

    See :func:`read_entries` for the formats, ids and errors.
    """
    return [(e.id, *e.parse()) for e in read_entries(path, id_column, limit)]


def compact_text(structure: Structure, decimals: int = 4) -> str:
    """A structure as compact JSON: lattice (Å), atomic numbers, fractional coordinates.

    Rounded to ``decimals`` (1e-4 of a lattice vector is about 1e-3 Å): enough to match
    structures and recompute energies, at a tenth of the size of pymatgen's JSON.
    """
    frac = np.round(np.mod(structure.frac_coords, 1.0), decimals) % 1.0
    payload = {
        "l": np.round(structure.lattice.matrix, decimals).tolist(),
        "z": [site.specie.Z for site in structure],
        "f": frac.tolist(),
    }
    return json.dumps(payload, separators=(",", ":"))


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
            while block := handle.read(1 << 20):
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
        rows, readable by :func:`tasks.core.records.read_records`), or any other path, taken
        as a folder that receives one ``<id>.cif`` per structure (``/`` and ``:`` in ids
        become ``_``).
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
