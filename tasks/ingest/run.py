"""Ingestion: raw entries → analysed records, in parallel, cached by content.

Output of :func:`ingest_source` in ``out_dir``:

- ``dataset.parquet``: every record (``ok`` and not), see :class:`tasks.core.records.CrystalRecord`;
- ``rejects.csv``: id, source, status, reason and the raw input of every entry not ``ok``;
- ``stats.json``: :func:`tasks.ingest.stats.dataset_stats` plus timings;
- ``plots/spacegroups.png``, ``plots/orbits.png``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from tasks.core.atomic import atomic_write, write_json_atomic, write_text_atomic
from tasks.core.mapping import Mapper, resolve_mapper, resolve_workers
from tasks.core.paths import REPO_ROOT, SAMPLES_DIR
from tasks.core.records import (
    STATUS_FAILED,
    STATUS_OK,
    CrystalRecord,
    records_to_frame,
    write_records,
)
from tasks.ingest.analysis import analyse_entry, cache_key
from tasks.ingest.analysis_cache import AnalysisCache, write_seed
from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.ingest.sources import RawEntry, source_entries, source_name
from tasks.ingest.stats import dataset_stats, plot_distributions

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = REPO_ROOT / "data" / "cache"
#: Analyses shipped with the repository (:mod:`tasks.ingest.analysis_cache`, "Seeds").
SEED_FILES = tuple(sorted(SAMPLES_DIR.glob("*.analysis.jsonl.gz")))


@dataclass
class IngestResult:
    """What one ingestion produced, with where it was written."""

    name: str
    out_dir: Path
    dataset: Path
    rejects: Path
    stats_file: Path
    plots: list[Path]
    stats: dict[str, Any]
    n_cached: int
    n_computed: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _analyse_chunk(job: tuple[Sequence[RawEntry], IngestConfig]) -> list[CrystalRecord]:
    entries, config = job
    return [analyse_entry(entry, config) for entry in entries]


def analyse_entries(
    entries: Sequence[RawEntry],
    config: IngestConfig,
    on_chunk: Callable[[list[CrystalRecord]], None] | None = None,
    mapper: Mapper | None = None,
) -> list[CrystalRecord]:
    """Analyse entries in chunks, keeping the input order.

    Chunks of ``config.chunk_size`` run in waves of a few chunks per worker; ``on_chunk``
    sees each wave's chunks as soon as the wave finishes (ingestion writes them to the
    cache), so a kill loses at most one wave.

    Parameters
    ----------
    entries
        Raw entries to analyse.
    config
        Analysis settings; ``n_workers`` (0 = all cores) and ``chunk_size`` set the
        parallelism when no mapper is given.
    on_chunk
        Called with each finished chunk.
    mapper
        Where the chunks run (default: ``config.n_workers`` local processes).
    """
    mapper = resolve_mapper(mapper, resolve_workers(config.n_workers))
    size = config.chunk_size
    chunks = [list(entries[i : i + size]) for i in range(0, len(entries), size)]
    wave = max(1, 4 * resolve_workers(config.n_workers))
    results: list[CrystalRecord] = []
    progress = tqdm(total=len(entries), desc="analyse", unit="crystal", disable=None)
    for start in range(0, len(chunks), wave):
        batch = chunks[start : start + wave]
        for chunk in mapper(_analyse_chunk, [(c, config) for c in batch]):
            if on_chunk:
                on_chunk(chunk)
            results.extend(chunk)
            progress.update(len(chunk))
    progress.close()
    return results


def ingest_entries(
    entries: Sequence[RawEntry], config: IngestConfig, mapper: Mapper | None = None
) -> tuple[list[CrystalRecord], int]:
    """Analyse entries, reusing cached analyses; returns records and how many were cached."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else DEFAULT_CACHE_DIR
    keys = [cache_key(entry, config) for entry in entries]
    with AnalysisCache(cache_dir / "analysis.sqlite", SEED_FILES) as cache:
        cached = cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in cached]
        log.info("%d of %d entries cached, analysing %d", len(cached), len(entries), len(missing))
        todo = [entries[i] for i in missing]
        by_id = {entry.id: key for entry, key in zip(entries, keys, strict=True)}

        def store(chunk: list[CrystalRecord]) -> None:
            # failures are analysis errors, not properties of the input: retry them next time
            cache.put_many((by_id[r.id], r) for r in chunk if r.status != STATUS_FAILED)

        fresh = {r.id: r for r in analyse_entries(todo, config, on_chunk=store, mapper=mapper)}
    records = []
    for entry, key in zip(entries, keys, strict=True):
        if key in cached:
            record = CrystalRecord(id=entry.id, source=entry.source, **cached[key])
        else:
            record = fresh[entry.id]
        record.content_hash = key[:16]
        records.append(record)
    return records, len(entries) - len(missing)


def write_analysis_seed(source: DatasetSource, config: IngestConfig, path: str | Path) -> Path:
    """Analyse a source (or take it from the cache) and write its records as a seed file.

    The bundled sample's seed (:data:`SEED_FILES`) is written this way: ``discovery ingest
    --write-seed data/samples`` after a change of the analysis or of the quick profile's
    ingestion settings (a test says when the shipped seed no longer covers the sample).
    """
    cache_dir = Path(config.cache_dir) if config.cache_dir else DEFAULT_CACHE_DIR
    entries = source_entries(source, cache_dir)
    records, _ = ingest_entries(entries, config)
    keys = [cache_key(entry, config) for entry in entries]
    kept = [(k, r) for k, r in zip(keys, records, strict=True) if r.status != STATUS_FAILED]
    return write_seed(kept, path)


def seed_path(source: DatasetSource, folder: str | Path) -> Path:
    """Where a source's seed lives: ``<folder>/<source file name>.analysis.jsonl.gz``."""
    name = Path(str(source.path)).name.split(".")[0] if source.path else source_name(source)
    return Path(folder) / f"{name}.analysis.jsonl.gz"


def write_rejects(
    entries: Sequence[RawEntry], records: Sequence[CrystalRecord], path: Path
) -> Path:
    """Write every entry that is not ``ok`` with its reason and raw input (nothing is lost)."""
    raw = {entry.id: entry.payload for entry in entries}
    rows = [
        {"id": r.id, "source": r.source, "status": r.status, "reason": r.reason, "raw": raw[r.id]}
        for r in records
        if r.status != STATUS_OK
    ]
    frame = pd.DataFrame(rows, columns=["id", "source", "status", "reason", "raw"])
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def ingest_entries_to_dir(
    entries: Sequence[RawEntry],
    name: str,
    out_dir: str | Path,
    config: IngestConfig,
    mapper: Mapper | None = None,
) -> IngestResult:
    """Analyse entries and write dataset, rejects, stats and plots into ``out_dir``."""
    out_dir = Path(out_dir)
    start = time.perf_counter()
    records, n_cached = ingest_entries(entries, config, mapper)
    frame = records_to_frame(records)
    seconds = time.perf_counter() - start
    dataset = write_records(frame, out_dir / "dataset.parquet")
    rejects = write_rejects(entries, records, out_dir / "rejects.csv")
    stats = dataset_stats(frame)
    stats["name"] = name
    stats["timing"] = {
        "seconds": seconds,
        "n_cached": n_cached,
        "n_computed": len(records) - n_cached,
        "structures_per_second": len(records) / seconds if seconds > 0 else float("inf"),
        "workers": resolve_workers(config.n_workers),
    }
    stats_file = write_json_atomic(out_dir / "stats.json", stats)
    plots = plot_distributions(frame, out_dir / "plots", title=name) if config.plots else []
    counts = stats["counts"]
    log.info(
        "%s: %d ok, %d rejected, %d failed in %.1f s (%d cached)",
        name,
        counts["ok"],
        counts["rejected"],
        counts["failed"],
        seconds,
        n_cached,
    )
    return IngestResult(
        name=name,
        out_dir=out_dir,
        dataset=dataset,
        rejects=rejects,
        stats_file=stats_file,
        plots=plots,
        stats=stats,
        n_cached=n_cached,
        n_computed=len(records) - n_cached,
        seconds=seconds,
    )


def ingest_source(
    source: DatasetSource, out_dir: str | Path, config: IngestConfig, mapper: Mapper | None = None
) -> IngestResult:
    """Read a configured source and ingest it into ``out_dir``."""
    cache_dir = Path(config.cache_dir) if config.cache_dir else DEFAULT_CACHE_DIR
    entries = source_entries(source, cache_dir)
    return ingest_entries_to_dir(entries, source_name(source), out_dir, config, mapper)


def sources_in(path: str | Path, limit: int | None = None) -> dict[str, DatasetSource]:
    """Dataset sources found at ``path``.

    A CSV / extxyz file or a folder of CIFs is one source; a folder of CSV splits (such as
    ``../shared/data/mp_20``) gives one source per split, named ``<folder>/<split>``.
    """
    path = Path(path)
    if path.is_dir():
        csvs = sorted([*path.glob("*.csv"), *path.glob("*.csv.gz")])
        if csvs:
            sources = {}
            for csv in csvs:
                split = csv.name.removesuffix(".gz").removesuffix(".csv")
                name = f"{path.name}/{split}"
                sources[name] = DatasetSource(kind="csv", path=csv, name=name, limit=limit)
            return sources
        return {path.name: DatasetSource(kind="cif_dir", path=path, limit=limit)}
    if not path.exists():
        raise FileNotFoundError(f"no dataset at {path}")
    kind = "extxyz" if path.suffix in (".extxyz", ".xyz") else "csv"
    source = DatasetSource(kind=kind, path=path, limit=limit)
    return {source_name(source): source}


_SUMMARY_ROWS = [
    ("crystals ok / total", lambda s: f"{s['counts']['ok']:,} / {s['counts']['total']:,}"),
    ("P1 fraction", lambda s: f"{100 * s['p1_fraction']:.3f}%"),
    ("distinct space groups", lambda s: f"{s['n_spacegroups']}"),
    (
        "atoms per primitive cell, mean / std / max",
        lambda s: "{mean:.2f} / {std:.2f} / {max:.0f}".format(**s["atoms_per_cell"]),
    ),
    (
        "unique elements, mean / std",
        lambda s: "{mean:.3f} / {std:.3f}".format(**s["unique_elements"]),
    ),
    (
        "Wyckoff orbits, mean / std / max",
        lambda s: "{mean:.3f} / {std:.3f} / {max:.0f}".format(**s["orbits_per_crystal"]),
    ),
    ("distinct (space group, Wyckoff letter) pairs", lambda s: f"{s['n_wyckoff_pairs']}"),
    (
        "structures/s (cached)",
        lambda s: f"{s['timing']['structures_per_second']:.1f} ({s['timing']['n_cached']})",
    ),
]


def summary_table(results: Sequence[IngestResult]) -> str:
    """Markdown table of the statistics of several ingested datasets, one column each."""
    header = "| statistic | " + " | ".join(r.name for r in results) + " |"
    rule = "| --- |" + " --- |" * len(results)
    rows = [
        f"| {label} | " + " | ".join(fmt(r.stats) for r in results) + " |"
        for label, fmt in _SUMMARY_ROWS
    ]
    return "\n".join([header, rule, *rows]) + "\n"


def write_summary(results: Sequence[IngestResult], out_dir: str | Path) -> Path:
    """Write ``summary.md`` (table across splits) and ``summary.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    write_json_atomic(out_dir / "summary.json", {r.name: r.stats for r in results})
    return write_text_atomic(out_dir / "summary.md", summary_table(results))


def split_dir(out_dir: str | Path, name: str) -> Path:
    """Output folder of one split: ``mp_20/test`` → ``<out_dir>/mp_20__test``."""
    return Path(out_dir) / name.replace("/", "__")


def ingest_sources(
    sources: dict[str, DatasetSource], out_dir: str | Path, config: IngestConfig
) -> list[IngestResult]:
    """Ingest named sources (e.g. a profile's ``datasets``) into ``<out_dir>/<name>/``."""
    results = [
        ingest_source(source, Path(out_dir) / key, config) for key, source in sources.items()
    ]
    write_summary(results, out_dir)
    return results


def ingest_path(
    path: str | Path, out_dir: str | Path, config: IngestConfig, limit: int | None = None
) -> list[IngestResult]:
    """Ingest every source found at ``path`` (see :func:`sources_in`) and write the summary."""
    results = [
        ingest_source(source, split_dir(out_dir, name), config)
        for name, source in sources_in(path, limit=limit).items()
    ]
    write_summary(results, out_dir)
    return results
