"""The relaxation runner: candidates in chunks, over a Mapper, written chunk by chunk, resumable.

:func:`relax_items` cuts candidates into chunks of ``relax.chunk_size`` and runs each chunk
with the configured engine (:mod:`tasks.mlip.ase_engine` or :mod:`tasks.mlip.batched_engine`)
wherever a :data:`tasks.core.mapping.Mapper` sends it. :func:`run_relax` does this for a
candidate file and writes every chunk to ``<out>/chunks/<settings hash>/`` as soon as it
finishes, so a rerun after a crash relaxes only what is missing. Resume is keyed by id,
the content hash of the input structure and the settings (MLIP version and everything
:func:`tasks.core.config.content_dump` keeps of the relaxation settings): a changed
structure under an old id is relaxed again, and results of other settings are never reused.

Rows in = rows out: every input entry (unreadable and duplicated ones included, see
:func:`tasks.core.structure_io.read_entries`) has exactly one row in ``relaxed.parquet``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.core.atomic import atomic_write
from tasks.core.cluster import dask_mapper
from tasks.core.config import content_dump
from tasks.core.mapping import Mapper, local_mapper, serial_map
from tasks.core.records import (
    STATUS_FAILED,
    STATUS_OK,
    structure_from_json,
    structure_hash,
    structure_to_json,
)
from tasks.core.structure_io import read_entries
from tasks.mlip.backends import load_mlip
from tasks.mlip.documents import RELAX_META, RelaxMeta
from tasks.mlip.results import (
    RESULT_COLUMNS,
    Item,
    RelaxResult,
    rejected,
    results_frame,
    structure_to_atoms,
)
from tasks.mlip.settings import MLIPConfig, RelaxConfig

log = logging.getLogger(__name__)


def relax_chunk(items: Sequence[Item], mlip: MLIPConfig, config: RelaxConfig) -> pd.DataFrame:
    """Relax one chunk in this process with ``config.engine`` (one row per item, in order)."""
    if config.engine == "batched":
        from tasks.mlip.batched_engine import relax_chunk_batched  # imports torch-sim

        return relax_chunk_batched(items, mlip, config)
    from tasks.mlip.ase_engine import relax_chunk_ase

    return relax_chunk_ase(items, mlip, config)


#: One chunk as a mapper job: items, their input hashes, settings, and where to save it.
Job = tuple[list[Item], dict[str, str], MLIPConfig, RelaxConfig, "Path | None"]


def _relax_job(job: Job) -> pd.DataFrame:
    """Relax, stamp input hashes, save; an exception becomes failed rows (not saved)."""
    chunk, hashes, mlip, config, path = job
    try:
        frame = relax_chunk(chunk, mlip, config)
    except Exception as err:
        log.error("chunk of %d candidates lost: %s: %s", len(chunk), type(err).__name__, err)
        return _failed(chunk, f"worker failed: {type(err).__name__}: {err}")
    frame["input_hash"] = [hashes.get(i, "") for i in frame["id"]]
    if path is not None:
        atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def _failed(chunk: Sequence[Item], reason: str) -> pd.DataFrame:
    return results_frame([RelaxResult(id=i, status=STATUS_FAILED, reason=reason) for i, _ in chunk])


def _chunk_name(items: Sequence[Item], hashes: dict[str, str]) -> str:
    text = "\n".join(f"{i}:{hashes.get(i, '')}" for i, _ in items)
    return f"chunk-{hashlib.sha256(text.encode()).hexdigest()[:16]}.parquet"


@contextlib.contextmanager
def placement_mapper(config: RelaxConfig) -> Iterator[Mapper]:
    """Where chunks run when no mapper is given: ``config.scheduler``'s choice."""
    if config.scheduler == "dask":
        with dask_mapper(config.scheduler_address, config.n_workers) as mapper:
            yield mapper
    elif config.scheduler == "process" and config.engine == "ase":
        yield local_mapper(config.n_workers)
    else:  # serial, or batched: one model per process, chunks one after the other
        yield serial_map


def check_engine(mlip: MLIPConfig, config: RelaxConfig) -> None:
    """Refuse an MLIP or setting before any work: a missing model, an engine mismatch.

    Raises
    ------
    tasks.mlip.backends.MLIPUnavailableError
        The model cannot be found.
    ValueError
        ``engine: batched`` with an MLIP it cannot run.
    """
    load_mlip(mlip)
    if config.engine == "batched":
        from tasks.mlip.batched_engine import check_batched

        check_batched(mlip, config)


def relax_items(
    items: Sequence[Item],
    mlip: MLIPConfig | None = None,
    config: RelaxConfig | None = None,
    chunk_dir: Path | None = None,
    mapper: Mapper | None = None,
    hashes: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Relax many candidates in chunks.

    Parameters
    ----------
    items
        ``(id, structure JSON)`` pairs with unique ids.
    mlip, config
        MLIP and relaxation settings (defaults: CHGNet, :class:`RelaxConfig`).
    chunk_dir
        If given, each chunk's table is written there as soon as it finishes.
    mapper
        Where the chunks run (the Prefect flow's Dask tasks); default: ``config.scheduler``
        (see :func:`placement_mapper`).
    hashes
        Input content hashes by id, stamped on the rows (resume keys).

    Returns
    -------
    pandas.DataFrame
        One row per item, in input order. Chunks lost to a dead worker are ``failed`` rows
        (and not in ``chunk_dir``, so a rerun retries them).
    """
    mlip, config = mlip or MLIPConfig(), config or RelaxConfig()
    check_engine(mlip, config)
    if not items:
        return results_frame([])
    hashes = hashes or {}
    size = config.chunk_size
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    paths = [chunk_dir / _chunk_name(c, hashes) if chunk_dir else None for c in chunks]
    jobs: list[Job] = [(c, hashes, mlip, config, p) for c, p in zip(chunks, paths, strict=True)]
    log.info("relaxing %d candidates in %d chunks", len(items), len(chunks))
    with contextlib.ExitStack() as stack:
        run = mapper or stack.enter_context(placement_mapper(config))
        try:
            frames = run(_relax_job, jobs)
        except Exception as err:  # a worker died: keep what was saved, fail the rest
            log.error("relaxation workers failed: %s: %s", type(err).__name__, err)
            frames = [
                pd.read_parquet(p) if p is not None and p.is_file()
                else _failed(c, f"worker failed: {type(err).__name__}: {err}")
                for c, p in zip(chunks, paths, strict=True)
            ]  # fmt: skip
    order = {candidate_id: k for k, (candidate_id, _) in enumerate(items)}
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values("id", key=lambda s: s.map(order)).reset_index(drop=True)


@dataclass
class Candidates:
    """A candidate file as the runner needs it.

    Attributes
    ----------
    items
        Readable candidates as ``(id, structure JSON)``.
    rejects
        Result rows of the entries that cannot be relaxed (unreadable, not ``ok`` in
        their table, duplicated ids), ``rejected`` with the reason.
    hashes
        Content hash of each readable input, by id.
    order
        Every entry's id, in input order.
    """

    items: list[Item]
    rejects: pd.DataFrame
    hashes: dict[str, str]
    order: list[str]


def load_candidates(path: str | Path) -> Candidates:
    """Read candidates through :func:`tasks.core.structure_io.read_entries`.

    Parameters
    ----------
    path
        Any structure set (records or samples parquet, extxyz, CSV with ``cif``, CIF
        folder).
    """
    items: list[Item] = []
    rejects: list[RelaxResult] = []
    hashes: dict[str, str] = {}
    entries = read_entries(path)
    for entry in entries:
        structure, reason = entry.parse()
        if structure is None:
            rejects.append(rejected(entry.id, f"unreadable structure: {reason}"))
            continue
        try:
            hashes[entry.id] = structure_hash(structure)
        except Exception as err:  # nonsense cells make the primitive search fail
            rejects.append(rejected(entry.id, f"input: {type(err).__name__}: {err}"[:300]))
            continue
        items.append((entry.id, structure_to_json(structure)))
    return Candidates(items, results_frame(rejects), hashes, [e.id for e in entries])


def settings_key(mlip: MLIPConfig, config: RelaxConfig) -> str:
    """Hash of what a relaxation computes: the MLIP's version and the content settings."""
    payload = json.dumps(
        {"mlip": load_mlip(mlip).version, "relax": content_dump(config)}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def finished(chunk_dir: Path) -> pd.DataFrame:
    """Rows already saved in the chunk files of a previous (possibly interrupted) run."""
    files = sorted(chunk_dir.glob("chunk-*.parquet"))
    if not files:
        return results_frame([])
    return pd.concat([pd.read_parquet(p) for p in files], ignore_index=True)


def run_relax(
    candidates: str | Path,
    out_dir: str | Path,
    mlip: MLIPConfig | None = None,
    config: RelaxConfig | None = None,
    mapper: Mapper | None = None,
) -> Path:
    """Relax a candidate file into ``out_dir``; resumable.

    Writes ``chunks/<settings>/chunk-*.parquet`` as chunks finish, then ``relaxed.parquet``
    (one row per input entry, :class:`tasks.mlip.results.RelaxResult` columns, input order),
    ``relaxed.extxyz`` (the ``ok`` structures with ``id`` and ``energy_mlip`` in ``info``)
    and ``relax_meta.json`` (:class:`tasks.mlip.documents.RelaxMeta`: MLIP, settings, counts).

    Parameters
    ----------
    candidates
        Candidate file (see :func:`load_candidates`).
    out_dir
        Output directory (created).
    mlip, config
        MLIP and relaxation settings.
    mapper
        Where the chunks run (see :func:`relax_items`).

    Returns
    -------
    Path
        The ``relaxed.parquet`` path.
    """
    mlip, config = mlip or MLIPConfig(), config or RelaxConfig()
    check_engine(mlip, config)
    backend = load_mlip(mlip)
    out = Path(out_dir)
    chunk_dir = out / "chunks" / settings_key(mlip, config)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_candidates(candidates)
    items, hashes = loaded.items, loaded.hashes
    done = finished(chunk_dir)
    done_keys = set(zip(done["id"], done["input_hash"], strict=True))
    todo = [item for item in items if (item[0], hashes[item[0]]) not in done_keys]
    log.info(
        "%d candidates, %d already relaxed, %d to do", len(items), len(items) - len(todo), len(todo)
    )
    start = time.perf_counter()
    fresh = relax_items(todo, mlip, config, chunk_dir, mapper, hashes)
    elapsed = time.perf_counter() - start
    saved = finished(chunk_dir)
    current = {(i, hashes[i]) for i, _ in items}
    saved = saved[[k in current for k in zip(saved["id"], saved["input_hash"], strict=True)]]
    lost = fresh[~fresh["id"].isin(set(saved["id"]))]
    if len(lost):
        log.error("%d candidates lost to worker failures; rerun to retry them", len(lost))
    frame = pd.concat([loaded.rejects, saved, lost], ignore_index=True)
    frame = frame.drop_duplicates("id", keep="last")[RESULT_COLUMNS]
    entry_order = {i: k for k, i in enumerate(loaded.order)}
    frame = frame.sort_values("id", key=lambda s: s.map(entry_order)).reset_index(drop=True)
    path = atomic_write(out / "relaxed.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    _write_extxyz(frame, out / "relaxed.extxyz")
    RelaxMeta(
        mlip=mlip,
        mlip_name=backend.name,
        mlip_version=backend.version,
        relax=config,
        settings_key=chunk_dir.name,
        single_point=config.single_point,
        candidates=str(candidates),
        n_candidates=len(frame),
        n_relaxed_this_run=len(todo),
        n_lost_to_worker_failures=len(lost),
        status_counts={str(k): int(v) for k, v in frame["status"].value_counts().items()},
        n_converged=int(frame["converged"].astype(bool).sum()),
        wall_s=elapsed,
    ).write(out / RELAX_META)
    return path


def _write_extxyz(frame: pd.DataFrame, path: Path) -> None:
    from ase.io import write

    images = []
    for row in frame[frame["status"] == STATUS_OK].itertuples():
        atoms = structure_to_atoms(structure_from_json(row.structure))
        atoms.info.update(id=row.id, energy_mlip=row.energy, converged=bool(row.converged))
        images.append(atoms)
    atomic_write(path, lambda tmp: write(tmp, images, format="extxyz"))
