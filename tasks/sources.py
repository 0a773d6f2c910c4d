"""Read raw crystal entries from the supported sources, without parsing them yet.

Parsing happens in :mod:`tasks.ingest` (in parallel, with caching and reject handling), so
here each entry keeps its raw text: a CIF, or pymatgen JSON for sources that come as objects
(extxyz frames, Materials Project documents).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from tasks.config import DatasetSource
from tasks.download import canonical_path
from tasks.paths import resolve_data_path

log = logging.getLogger(__name__)

MP_API_KEY_ENV = "MP_API_KEY"


@dataclass(frozen=True)
class RawEntry:
    """An unparsed crystal with its stable id.

    Attributes
    ----------
    id
        ``<source>:<material id>`` (or the file stem / row number when no id exists).
    source
        Dataset name.
    material_id
        The id inside the source.
    payload
        CIF text (``fmt="cif"``) or pymatgen structure JSON (``fmt="json"``); empty if the
        source could not even produce text (``error`` then says why).
    """

    id: str
    source: str
    material_id: str
    payload: str
    fmt: Literal["cif", "json"] = "cif"
    error: str = ""


def read_csv_entries(
    path: str | Path, source: str, id_column: str = "material_id", limit: int | None = None
) -> list[RawEntry]:
    """Entries of a CSV (optionally gzipped) with a ``cif`` column and an optional id column."""
    frame = pd.read_csv(path, nrows=limit)
    if "cif" not in frame.columns:
        raise ValueError(f"{path}: no 'cif' column (columns: {list(frame.columns)})")
    ids = frame[id_column].astype(str) if id_column in frame.columns else None
    entries = []
    for i, cif in enumerate(frame["cif"]):
        material_id = ids.iloc[i] if ids is not None else f"row-{i}"
        text = cif if isinstance(cif, str) else ""
        entries.append(
            RawEntry(
                id=f"{source}:{material_id}",
                source=source,
                material_id=material_id,
                payload=text,
                error="" if text else "empty cif field",
            )
        )
    return entries


def read_cif_dir(path: str | Path, source: str, limit: int | None = None) -> list[RawEntry]:
    """Entries of a folder of ``*.cif`` files; the file stem is the id."""
    files = sorted(Path(path).glob("*.cif"))[:limit]
    entries = []
    for file in files:
        try:
            text, error = file.read_text(), ""
        except (OSError, UnicodeDecodeError) as err:
            text, error = "", f"unreadable file: {err}"
        entries.append(RawEntry(f"{source}:{file.stem}", source, file.stem, text, "cif", error))
    return entries


def read_extxyz_entries(path: str | Path, source: str, limit: int | None = None) -> list[RawEntry]:
    """Entries of an extended-XYZ file; frame ``info['id']`` is the id, else the frame index."""
    from ase.io import iread
    from pymatgen.io.ase import AseAtomsAdaptor

    entries = []
    for i, atoms in enumerate(iread(str(path), index=":", format="extxyz")):
        if limit is not None and i >= limit:
            break
        material_id = str(atoms.info.get("id", f"frame-{i}"))
        try:
            payload = json.dumps(AseAtomsAdaptor.get_structure(atoms).as_dict())
            error = ""
        except Exception as err:  # a frame without a cell, unknown symbols...
            payload, error = "", f"frame {i} is not a periodic crystal: {err}"
        entries.append(
            RawEntry(f"{source}:{material_id}", source, material_id, payload, "json", error)
        )
    return entries


def query_materials_project(
    source: str,
    max_sites: int = 20,
    max_energy_above_hull: float = 0.08,
    max_elements: int | None = None,
    limit: int | None = None,
    api_key: str | None = None,
) -> list[RawEntry]:
    """Entries from a Materials Project query with MP-20-like criteria (needs ``mp-api``).

    The API key comes from ``api_key`` or ``$MP_API_KEY``.
    """
    key = api_key or os.environ.get(MP_API_KEY_ENV)
    if not key:
        raise RuntimeError(f"a Materials Project query needs an API key: set ${MP_API_KEY_ENV}")
    try:
        from mp_api.client import MPRester
    except ImportError as err:
        raise RuntimeError("install the 'mp' extra: pip install 'crystal-discovery[mp]'") from err
    criteria: dict[str, object] = {
        "num_sites": (1, max_sites),
        "energy_above_hull": (0, max_energy_above_hull),
    }
    if max_elements is not None:
        criteria["num_elements"] = (1, max_elements)
    with MPRester(key) as rester:
        docs = rester.materials.summary.search(
            **criteria, fields=["material_id", "structure"], num_chunks=None
        )
    entries = []
    for doc in docs[:limit]:
        material_id = str(doc.material_id)
        payload = json.dumps(doc.structure.as_dict())
        entries.append(RawEntry(f"{source}:{material_id}", source, material_id, payload, "json"))
    return entries


def source_name(source: DatasetSource) -> str:
    """Name used as the id prefix: the canonical name, else the file or folder stem."""
    if source.name:
        return source.name
    if source.kind == "materials_project":
        return "materials_project"
    assert source.path is not None
    stem = Path(source.path).name
    for suffix in (".gz", ".csv", ".extxyz", ".xyz"):
        stem = stem.removesuffix(suffix)
    return stem


def read_entries(source: DatasetSource, cache_dir: str | Path) -> list[RawEntry]:
    """All raw entries of a configured source."""
    name = source_name(source)
    path = resolve_data_path(source.path) if source.path is not None else None
    if source.kind == "csv":
        return read_csv_entries(path, name, source.id_column, source.limit)
    if source.kind == "cif_dir":
        return read_cif_dir(path, name, source.limit)
    if source.kind == "extxyz":
        return read_extxyz_entries(path, name, source.limit)
    if source.kind == "canonical":
        path = canonical_path(source.name, Path(cache_dir) / "downloads", path)
        return read_csv_entries(path, name, source.id_column, source.limit)
    return query_materials_project(name, limit=source.limit)
