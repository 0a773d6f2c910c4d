"""A content-addressed cache of analysed records (SQLite, one file, safe to reuse across runs).

Keys hash the raw input text together with the analysis settings, so changing ``symprec``
or the representation code's version invalidates exactly what it should.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from tasks.core.records import CrystalRecord

_SCHEMA = "CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, record TEXT NOT NULL)"


class AnalysisCache:
    """Map from content key to an analysed :class:`CrystalRecord` (id and source excluded)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path)
        self._conn.execute(_SCHEMA)
        self._conn.commit()

    def get_many(self, keys: Iterable[str]) -> dict[str, dict]:
        """Cached record fields for the keys present in the cache."""
        keys = list(keys)
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT key, record FROM records WHERE key IN ({marks})"
            for key, text in self._conn.execute(query, chunk):
                found[key] = json.loads(text)
        return found

    def put_many(self, items: Iterable[tuple[str, CrystalRecord]]) -> None:
        """Store records (their id/source are not part of the cached content)."""
        rows = []
        for key, record in items:
            fields = asdict(record)
            fields.pop("id")
            fields.pop("source")
            rows.append((key, json.dumps(fields)))
        self._conn.executemany("INSERT OR REPLACE INTO records VALUES (?, ?)", rows)
        self._conn.commit()

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def __enter__(self) -> AnalysisCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
