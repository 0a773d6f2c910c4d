"""Reference energy tables: one MLIP's energy of every competing phase, built once.

The papers judge stability against a hull of *all* competing phases of MP-20 and MPTS-52
(``docs/evaluation.md``, step 6), not against the training set. A reference table holds,
for every distinct phase of those splits, the MLIP energy per atom with its id, formula,
content key and compact structure, plus the provenance of the whole table (MLIP name and
version, how the energies were computed, the sources and their fingerprints, the date, the
measured bias of single points). One is shipped for CHGNet
(:data:`SHIPPED_TABLE`), so a fresh clone without ``../shared`` has the papers' hull, and one
for SevenNet (:data:`SEVENNET_TABLE`, a committee member's hull); a MACE or matgl hull builds
its own with ``discovery hull-reference build``.

A table's energies are only used by a hull of the same MLIP version (:func:`check_table`
refuses any other), and every output built on single-point references says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pymatgen.core import Composition

from tasks.core.atomic import atomic_write, write_text_atomic
from tasks.core.mapping import Mapper
from tasks.core.paths import REPO_ROOT, shared_data_dir
from tasks.core.records import STATUS_OK
from tasks.core.structure_io import (
    StructureEntry,
    compact_text,
    dataset_fingerprint,
    read_entries,
)
from tasks.mlip.backends import load_mlip
from tasks.mlip.runner import finished, relax_items
from tasks.mlip.settings import MLIPConfig, RelaxConfig

log = logging.getLogger(__name__)

#: The table shipped with the repository: CHGNet single points of every MP-20 / MPTS-52 phase.
SHIPPED_TABLE = REPO_ROOT / "data" / "reference" / "chgnet-mp20-mpts52.parquet"
#: SevenNet (7net-0) single points of the same phases, for its hull in a committee.
SEVENNET_TABLE = REPO_ROOT / "data" / "reference" / "sevennet-mp20-mpts52.parquet"
SHIPPED_TABLES = (SHIPPED_TABLE, SEVENNET_TABLE)
#: The splits of the papers' hull, as the shared data folder names them.
HULL_SPLITS = (
    "mp_20/train_partial",
    "mp_20/val",
    "mp_20/test",
    "mpts_52/train_partial",
    "mpts_52/val",
    "mpts_52/test",
)
TABLE_COLUMNS = [
    "id",
    "key",
    "formula",
    "n_atoms",
    "energy_per_atom",
    "status",
    "reason",
    "crystal",
]
Method = Literal["single_point", "relaxed"]


class TableMismatchError(ValueError):
    """A reference table does not belong to the MLIP (or method) it is asked to serve."""


def reference_key(payload: str) -> str:
    """Content key of a reference phase: the hash of its input text (the cache key of hulls)."""
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class SourceInfo(BaseModel):
    """One dataset a table was built from."""

    path: str
    fingerprint: str
    n_entries: int


class EnergyDrop(BaseModel):
    """How much relaxing lowers the MLIP's energies of reference phases (eV/atom; relaxed
    minus single point at the DFT geometry, over ``n`` phases): ``benchmarks/reference_bias``."""

    model_config = ConfigDict(extra="forbid")

    n: int
    mean: float
    median: float
    p95: float
    max: float


class _BiasRecord(BaseModel):
    """The part of a ``reference_bias`` benchmark record a table's provenance keeps."""

    model_config = ConfigDict(extra="ignore")

    drop: EnergyDrop = Field(alias="drop_eV_per_atom")


def read_bias(path: str | Path) -> EnergyDrop:
    """The measured drop in a ``benchmarks/reference_bias`` record (JSON).

    Raises
    ------
    ValueError
        The file is not such a record (the message names the file).
    """
    try:
        return _BiasRecord.model_validate_json(Path(path).read_text()).drop
    except ValidationError as err:
        raise ValueError(f"{path} is not a reference_bias record: {err}") from None


class TableMeta(BaseModel):
    """Provenance of a reference table (stored beside it as ``<table>.json``)."""

    model_config = ConfigDict(extra="forbid")

    mlip_name: str
    mlip_version: str
    method: Method
    relax: dict[str, Any]
    built_utc: str
    command: str
    sources: list[SourceInfo]
    n_phases: int
    n_ok: int
    wall_s: float
    phases_per_s: float
    bias: EnergyDrop | None = None

    def describe(self) -> str:
        """One line for reports: what the energies are and their known bias."""
        what = (
            "single points at the DFT geometries"
            if self.method == "single_point"
            else ("relaxed energies")
        )
        text = f"{self.mlip_version} {what} of {self.n_ok:,} MP-20 / MPTS-52 phases"
        if self.bias:
            text += (
                f"; relaxing lowers them by {self.bias.mean:.3f} eV/atom on average "
                f"(95th percentile {self.bias.p95:.3f}, {self.bias.n} phases measured), "
                "so relaxed candidates' E_hull can be that much too low"
            )
        return text


@dataclass(frozen=True)
class ReferenceTable:
    """A table's rows (see :data:`TABLE_COLUMNS`) and its provenance."""

    path: Path
    frame: pd.DataFrame
    meta: TableMeta

    def energies(self) -> dict[str, float]:
        """Energy per atom of every ``ok`` phase, by content key."""
        ok = self.frame[self.frame["status"] == STATUS_OK]
        return dict(zip(ok["key"], ok["energy_per_atom"].astype(float), strict=True))


def meta_path(table: Path) -> Path:
    """Where a table's provenance lives."""
    return table.with_suffix(".json")


def default_sources(shared: Path) -> list[Path]:
    """The MP-20 and MPTS-52 splits present in the shared data folder, in a fixed order."""
    paths = [shared / f"{split}.csv.gz" for split in HULL_SPLITS]
    return [p for p in paths if p.is_file()]


def _distinct(per_source: Sequence[list[StructureEntry]]) -> list[StructureEntry]:
    seen: set[str] = set()
    out = []
    for entries in per_source:
        for entry in entries:
            if entry.reason or entry.id in seen:
                continue
            seen.add(entry.id)
            out.append(entry)
    return out


def distinct_entries(sources: Sequence[Path]) -> list[StructureEntry]:
    """Readable entries of the sources, each id once (the first source that has it wins)."""
    return _distinct([read_entries(s) for s in sources])


def load_table(path: str | Path) -> ReferenceTable:
    """A reference table and its provenance.

    Raises
    ------
    FileNotFoundError
        The table or its ``.json`` provenance is missing.
    """
    path = Path(path)
    if not path.is_file() or not meta_path(path).is_file():
        raise FileNotFoundError(
            f"reference table {path} (or its provenance {meta_path(path).name}) not found; "
            "build one with `discovery hull-reference build`"
        )
    meta = TableMeta.model_validate_json(meta_path(path).read_text())
    return ReferenceTable(path, pd.read_parquet(path), meta)


def shipped_table(mlip_version: str) -> Path | None:
    """The shipped table built with this MLIP version, if the repository has one."""
    for path in SHIPPED_TABLES:
        meta = meta_path(path)
        if meta.is_file() and json.loads(meta.read_text())["mlip_version"] == mlip_version:
            return path
    return None


def check_table(meta: TableMeta, mlip_version: str, path: Path) -> None:
    """Refuse a table whose energies come from another MLIP (or another model file).

    Raises
    ------
    TableMismatchError
        With the fix: build a table for this MLIP with the same command.
    """
    if meta.mlip_version != mlip_version:
        raise TableMismatchError(
            f"reference table {path} holds {meta.mlip_version} energies but the hull uses "
            f"{mlip_version}: energies of different MLIPs cannot share a hull. Build a table "
            f"for this MLIP with `discovery hull-reference build --mlip ... --out TABLE` and "
            "set hull.table, or set hull.energies to 'single_point' or 'relaxed'"
        )


def build_reference_table(
    sources: Sequence[Path],
    out: str | Path,
    mlip: MLIPConfig | None = None,
    method: Method = "single_point",
    relax: RelaxConfig | None = None,
    mapper: Mapper | None = None,
    bias: EnergyDrop | None = None,
) -> Path:
    """Compute the MLIP energy of every distinct phase of ``sources`` and write the table.

    Chunks of ``relax.chunk_size`` phases run wherever ``mapper`` sends them (a Dask cluster,
    local processes) and are saved as they finish under ``<out>.work/``, so an interrupted
    build resumes where it stopped.

    Parameters
    ----------
    sources
        Structure sets (the MP-20 / MPTS-52 CSV splits).
    out
        The table (``.parquet``); its provenance goes to ``<out>.json``.
    mlip
        The MLIP (default CHGNet).
    method
        ``single_point`` (energies at the given, DFT, geometries) or ``relaxed``.
    relax
        Relaxation settings (``steps`` is forced to 0 for single points).
    mapper
        Where the chunks run (default: the settings' scheduler).
    bias
        Measured single-point bias to record (``benchmarks/reference_bias.py``).

    Returns
    -------
    Path
        ``out``.
    """
    out = Path(out)
    mlip = mlip or MLIPConfig()
    relax = relax or RelaxConfig(chunk_size=256)
    if method == "single_point":
        relax = relax.model_copy(update={"steps": 0})
    backend = load_mlip(mlip)
    start = time.perf_counter()
    per_source = [read_entries(s) for s in sources]
    entries = _distinct(per_source)
    keys = {e.id: reference_key(e.payload) for e in entries}
    work = out.with_name(out.name + ".work") / "chunks"
    work.mkdir(parents=True, exist_ok=True)
    done = set(finished(work)["id"])
    items, crystals = [], {}
    for entry in entries:
        structure, reason = entry.parse()
        if structure is None:
            log.warning("reference %s unreadable: %s", entry.id, reason)
            continue
        crystals[entry.id] = compact_text(structure)
        if entry.id not in done:
            items.append((entry.id, structure.to_json()))
    log.info("%d phases, %d already computed, %d to do", len(entries), len(done), len(items))
    relax_items(items, mlip, relax, chunk_dir=work, mapper=mapper)
    rows = finished(work).drop_duplicates("id", keep="last").set_index("id")
    frame = pd.DataFrame(
        {
            "id": [e.id for e in entries if e.id in rows.index],
            "key": [keys[e.id] for e in entries if e.id in rows.index],
            "formula": [
                Composition(e.formula or rows.loc[e.id, "formula"]).reduced_formula
                for e in entries
                if e.id in rows.index
            ],
        }
    )
    picked = rows.loc[frame["id"]]
    frame["n_atoms"] = picked["n_atoms"].to_numpy()
    frame["energy_per_atom"] = picked["energy_per_atom"].to_numpy()
    frame["status"] = picked["status"].to_numpy()
    frame["reason"] = picked["reason"].to_numpy()
    frame["crystal"] = [crystals[i] for i in frame["id"]]
    wall = time.perf_counter() - start
    atomic_write(out, lambda tmp: frame.to_parquet(tmp, index=False, compression="zstd"))
    meta = TableMeta(
        mlip_name=backend.name,
        mlip_version=backend.version,
        method=method,
        relax=relax.model_dump(mode="json"),
        built_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        sources=[
            SourceInfo(path=_display(s), fingerprint=dataset_fingerprint(s), n_entries=len(e))
            for s, e in zip(sources, per_source, strict=True)
        ],
        n_phases=len(frame),
        n_ok=int((frame["status"] == STATUS_OK).sum()),
        wall_s=wall,
        phases_per_s=len(items) / wall if wall > 0 else 0.0,
        bias=bias,
    )
    write_text_atomic(meta_path(out), json.dumps(meta.model_dump(), indent=2))
    return out


def _display(path: Path) -> str:
    """A source path as the table records it: relative to the shared data or the repo."""
    text = str(Path(path).resolve())
    for root, prefix in ((shared_data_dir(), "shared:"), (REPO_ROOT, "")):
        if text.startswith(str(root.resolve()) + "/"):
            return prefix + text[len(str(root.resolve())) + 1 :]
    return text
