"""A content-addressed cache of analysed records (SQLite, one file, safe to reuse across runs).

Keys hash the raw input text together with the analysis settings, so changing ``symprec``
or the representation code's version invalidates exactly what it should.

**Seeds**: read-only files of analysed records shipped with the repository
(``data/samples/*.analysis.jsonl.gz``, one ``{"key", "record"}`` per line), so a new user's
first ingestion of the bundled sample is a lookup, not a minute of analysis. A key missing
from the cache is looked up in the seeds and, when found there, copied into the cache. A seed
is only ever a cache: its keys carry the analysis version, so a stale seed matches nothing.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path

from tasks.core.records import CrystalRecord

_SCHEMA = "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record TEXT NOT NULL)"


class AnalysisCache:
    """Map from content key to an analysed :class:`CrystalRecord` (:func:`record_fields`)."""

    def __init__(self, path: str | Path, seeds: Sequence[Path] = ()) -> None:
        self.path = Path(path)
        self.seeds = tuple(seeds)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path)
        self._conn.execute(_SCHEMA)
        self._conn.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """Cached record fields for the keys present in the cache or its seeds."""
        keys = list(keys)
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, record FROM records WHERE key IN ({marks})"
            for key, text in self._conn.execute(query, chunk):
                found[key] = json.loads(text)
        missing = {key for key in keys if key not in found}
        if missing and self.seeds:
            seeded = {k: v for k, v in read_seeds(self.seeds).items() if k in missing}
            self._put_fields(seeded.items())
            found |= seeded
        return found

    def put_many(self, items: Iterable[tuple[str, CrystalRecord]]) -> None:
        """Store records (their id/source are not part of the cached content)."""
        self._put_fields((key, record_fields(record)) for key, record in items)

    def _put_fields(self, items: Iterable[tuple[str, dict]]) -> None:
        rows = [(key, json.dumps(fields)) for key, fields in items]
        self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)", rows)
        self._conn.commit()

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> AnalysisCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_fields(record: CrystalRecord) -> dict:
    """What the cache keeps of a record: every field but its id, source and content hash
    (the hash is the cache key's, set when the record is read back)."""
    fields = asdict(record)
    for derived in ("id", "source", "content_hash"):
        fields.pop(derived)
    return fields


def read_seeds(paths: Sequence[Path]) -> dict[str, dict]:
    """Every ``key → record fields`` of the seed files (a missing file is skipped)."""
    found: dict[str, dict] = {}
    for path in paths:
        if not path.is_file():
            continue
        with gzip.open(path, "rt") as handle:
            for line in handle:
                row = json.loads(line)
                found[row["key"]] = row["record"]
    return found


def write_seed(items: Iterable[tuple[str, CrystalRecord]], path: str | Path) -> Path:
    """Write analysed records as a seed file (sorted by key, so it is reproducible)."""
    rows = sorted((key, record_fields(record)) for key, record in items)
    path = Path(path)
    with gzip.GzipFile(path, "wb", mtime=0) as handle:
        for key, fields in rows:
            line = json.dumps({"key": key, "record": fields}, sort_keys=True)
            handle.write((line + "\n").encode())
    return path
