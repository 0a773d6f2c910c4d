"""Raw crystal entries of the configured sources, without parsing them yet.

Files are read by the project's one reader (:mod:`tasks.core.structure_io`); this module adds
the source name to each id and handles the canonical downloads and Materials Project
queries. Parsing happens in :mod:`tasks.ingest.run` (in parallel, with caching and reject
handling), so each entry keeps its raw text.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tasks.core.paths import resolve_data_path
from tasks.core.structure_io import Format, read_entries
from tasks.ingest.config import DatasetSource
from tasks.ingest.download import canonical_path

log = logging.getLogger(__name__)

MP_API_KEY_ENV = "MP_API_KEY"


@dataclass(frozen=True)
class RawEntry:
    """An unparsed crystal with its stable id.

    Attributes
    ----------
    id
        ``<source>:<id in the source>`` (see :mod:`tasks.core.structure_io` for how ids are
        found or generated).
    source
        Dataset name.
    material_id
        The id inside the source.
    payload
        CIF text, pymatgen structure JSON or one extxyz frame (``fmt``); empty if the
        source could not even produce text (``error`` then says why).
    """

    id: str
    source: str
    material_id: str
    payload: str
    fmt: Format = "cif"
    error: str = ""


def entries_from_file(
    path: str | Path, source: str, id_column: str | None = None, limit: int | None = None
) -> list[RawEntry]:
    """Raw entries of a structure set through the project's one reader.

    Any format :func:`tasks.core.structure_io.read_entries` reads: a CSV (optionally
    gzipped) with a ``cif`` column, a folder of CIF files (any letter case of ``.cif``, one
    entry per data block), an extxyz file (one entry per frame). One entry per input entry,
    unreadable ones included with their reason.
    """
    return [
        RawEntry(f"{source}:{e.id}", source, e.id, e.payload, e.fmt, e.reason)
        for e in read_entries(path, id_column=id_column, limit=limit)
    ]


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


def source_entries(source: DatasetSource, cache_dir: str | Path) -> list[RawEntry]:
    """All raw entries of a configured source."""
    name = source_name(source)
    path = resolve_data_path(source.path) if source.path is not None else None
    if source.kind == "materials_project":
        return query_materials_project(name, limit=source.limit)
    if source.kind == "canonical":
        assert source.name is not None
        path = canonical_path(source.name, Path(cache_dir) / "downloads", path)
    assert path is not None
    return entries_from_file(path, name, source.id_column, source.limit)
