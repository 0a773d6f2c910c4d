"""MLIP pre-relaxation: FIRE on a Fréchet cell filter, robust per candidate, chunked on disk.

One candidate is relaxed by :func:`relax_structure`; a chunk of candidates by
:func:`relax_chunk` (the unit of work of a worker process or a Dask task, which writes its
own parquet file); a whole candidate file by :func:`run_relax`, which skips ids already
present in ``<out>/chunks/`` so a rerun after a crash only does the missing work.

On CPU, relaxations run one per process with one torch thread each (a spawn process pool
or a Dask cluster): measured on this project's machine, batching structures on one CPU
model is slower than the plain ASE loop, and torch's default threading is up to 10x slower
when cores are shared. On a GPU, ``scheduler: batched`` relaxes each chunk as one batch on
the model instead (torch-sim, MACE models; see :mod:`tasks.relax_batched`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.neighborlist import neighbor_list
from ase.optimize import FIRE
from pydantic import Field, model_validator
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from tasks.atomic import atomic_write, write_json_atomic
from tasks.config import StrictModel
from tasks.mapping import Mapper, dask_worker_config, usable_cores
from tasks.mlip import MLIPConfig, load_mlip
from tasks.records import (
    STATUS_FAILED,
    STATUS_OK,
    STATUS_REJECTED,
    structure_from_json,
    structure_to_json,
)

log = logging.getLogger(__name__)

#: One unit of input: (candidate id, pymatgen JSON of its structure).
Item = tuple[str, str]
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_CALCULATORS: dict[str, Calculator] = {}
#: Inputs with more neighbours than this per atom within DENSE_RADIUS Å are rejected.
DENSE_RADIUS = 2.0
MAX_DENSE_NEIGHBOURS = 16
BATCHED_SYMMETRY_ERROR = (
    "fix_symmetry is not available with scheduler 'batched' (torch-sim 0.3.0 has no "
    "symmetry constraint); use scheduler 'serial', 'process' or 'dask' to keep the space group"
)


class RelaxConfig(StrictModel):
    """Settings of the MLIP relaxation (candidates and hull references share them).

    Attributes
    ----------
    fmax, steps
        FIRE convergence (eV/Å, on atoms and the Fréchet cell filter) and step limit;
        ``steps=0`` is a single point (no relaxation).
    fix_symmetry, symprec
        Keep the initial space group (ASE ``FixSymmetry`` at ``symprec`` Å).
    min_volume_ratio, max_volume_ratio
        Stop as collapsed / exploded when V / V_initial leaves this range.
    min_distance
        Stop as overlapping when two atoms come closer than this (Å).
    time_budget_s
        Wall-clock budget per candidate, checked after every step (``None`` = unlimited);
        with ``batched``, counted from the start of the candidate's batch.
    chunk_size
        Candidates per worker task and per output file; with ``batched``, the batch size.
    n_workers
        Worker processes (0 = all cores); ignored with a remote Dask scheduler.
    scheduler
        ``serial`` (this process), ``process`` (spawn pool), ``dask`` (a LocalCluster,
        or the cluster at ``scheduler_address``) or ``batched`` (each chunk as one batch on
        the model in this process, the GPU path: MACE only, no ``fix_symmetry``; see
        :mod:`tasks.relax_batched`).
    torch_threads
        ``torch.set_num_threads`` in each worker (1 is fastest on shared CPUs).
    """

    fmax: float = Field(default=0.05, gt=0)
    steps: int = Field(default=300, ge=0)
    fix_symmetry: bool = False
    symprec: float = Field(default=0.01, gt=0)
    min_volume_ratio: float = Field(default=0.25, gt=0, lt=1)
    max_volume_ratio: float = Field(default=4.0, gt=1)
    min_distance: float = Field(default=0.5, ge=0)
    time_budget_s: float | None = Field(default=600.0, gt=0)
    chunk_size: int = Field(default=8, gt=0)
    n_workers: int = Field(default=0, ge=0)
    scheduler: Literal["serial", "process", "dask", "batched"] = "process"
    scheduler_address: str | None = None
    torch_threads: int = Field(default=1, gt=0)

    @property
    def single_point(self) -> bool:
        """True when no relaxation is done (``steps == 0``)."""
        return self.steps == 0

    @model_validator(mode="after")
    def _check_batched(self) -> RelaxConfig:
        if self.scheduler == "batched" and self.fix_symmetry:
            raise ValueError(BATCHED_SYMMETRY_ERROR)
        return self


@dataclass
class RelaxResult:
    """The outcome for one candidate (one row of the output table).

    ``status`` is ``ok`` (finished; ``converged`` says whether fmax was reached within the
    step limit), ``failed`` (stopped: NaN energy, volume explosion/collapse, overlapping
    atoms, time budget, calculator error; ``reason`` says which) or ``rejected`` (unusable
    input). ``rmsd`` is the RMS displacement of the sites (Å), measured in the relaxed cell
    with the mean shift removed; cell changes are in ``volume_ratio``.
    """

    id: str
    status: str = STATUS_OK
    reason: str = ""
    formula: str = ""
    n_atoms: int = 0
    structure: str = ""
    energy: float = math.nan
    energy_per_atom: float = math.nan
    steps: int = 0
    converged: bool = False
    fmax: float = math.nan
    rmsd: float = math.nan
    volume_ratio: float = math.nan
    wall_s: float = 0.0
    mlip: str = ""
    mlip_version: str = ""
    single_point: bool = False


class RelaxStopError(Exception):
    """Raised inside the optimisation loop to stop one candidate with a reason."""


def structure_to_atoms(structure: Structure) -> Atoms:
    """Periodic ASE ``Atoms`` of a structure (species, cell, Cartesian positions only)."""
    return Atoms(
        symbols=[site.specie.symbol for site in structure],
        positions=structure.cart_coords,
        cell=structure.lattice.matrix,
        pbc=True,
    )


def atoms_to_structure(atoms: Atoms) -> Structure:
    """A plain pymatgen ``Structure`` of ``atoms`` (no calculator results, no constraints)."""
    return Structure(
        atoms.cell[:], atoms.get_chemical_symbols(), atoms.positions, coords_are_cartesian=True
    )


def displacement_rmsd(initial: Structure, final: Structure) -> float:
    """RMS site displacement (Å) between two structures with the same site order.

    Fractional displacements are wrapped to the nearest image, the mean shift is removed
    and the result is expressed in ``final``'s cell, so pure strain gives zero.
    """
    delta = final.frac_coords - initial.frac_coords
    delta -= np.round(delta)
    delta -= delta.mean(axis=0)
    cart = delta @ final.lattice.matrix
    return float(np.sqrt((cart**2).sum(axis=1).mean()))


def _overlap_reason(atoms: Atoms, min_distance: float) -> str:
    if min_distance <= 0 or len(atoms) == 0:
        return ""
    i, j, d = neighbor_list("ijd", atoms, cutoff=min_distance)
    if len(d) == 0:
        return ""
    k = int(np.argmin(d))
    return (
        f"overlapping atoms: {atoms[i[k]].symbol}{i[k]}-{atoms[j[k]].symbol}{j[k]} at {d[k]:.3f} Å"
    )


def _density_reason(atoms: Atoms) -> str:
    """Refuse unphysically dense cells: their MLIP neighbour graphs can exhaust memory."""
    shells = len(neighbor_list("i", atoms, cutoff=DENSE_RADIUS)) / len(atoms)
    if shells > MAX_DENSE_NEIGHBOURS:
        return (
            f"unphysically dense: {shells:.0f} neighbours per atom within {DENSE_RADIUS} Å "
            f"(limit {MAX_DENSE_NEIGHBOURS})"
        )
    return ""


def check_progress(
    atoms: Atoms,
    energy: float,
    forces: np.ndarray,
    v0: float,
    config: RelaxConfig,
    deadline: float | None,
) -> None:
    """Stop a relaxation that went wrong (checked after every step).

    Parameters
    ----------
    atoms
        The current geometry.
    energy, forces
        The model's energy (eV) and forces (eV/Å) at that geometry.
    v0
        The initial cell volume (Å³).
    config
        Relaxation settings (volume ratio range, ``min_distance``, time budget).
    deadline
        ``time.perf_counter()`` value after which the candidate is stopped (``None``: never).

    Raises
    ------
    RelaxStopError
        Non-finite energy or forces, volume explosion or collapse, overlapping atoms or an
        exceeded time budget, with the reason.
    """
    if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
        raise RelaxStopError(f"non-finite energy or forces (E={energy})")
    ratio = atoms.get_volume() / v0
    if ratio > config.max_volume_ratio:
        raise RelaxStopError(f"volume explosion: V/V0={ratio:.2f} > {config.max_volume_ratio}")
    if ratio < config.min_volume_ratio:
        raise RelaxStopError(f"volume collapse: V/V0={ratio:.2f} < {config.min_volume_ratio}")
    overlap = _overlap_reason(atoms, config.min_distance)
    if overlap:
        raise RelaxStopError(overlap)
    if deadline is not None and time.perf_counter() > deadline:
        raise RelaxStopError(f"time budget exceeded ({config.time_budget_s} s)")


def screen_input(
    structure: Structure, config: RelaxConfig, candidate_id: str = ""
) -> tuple[RelaxResult, Atoms | None]:
    """A candidate's result row and its ``Atoms``, checked before any model call.

    Returns
    -------
    result, atoms
        ``atoms`` is ``None`` and ``result`` is ``rejected`` with the reason when the input
        is unusable (partial occupancies, empty or zero-volume cell, overlapping atoms,
        unphysically dense).
    """
    result = RelaxResult(
        id=candidate_id,
        formula=structure.composition.reduced_formula,
        n_atoms=len(structure),
        single_point=config.single_point,
    )
    try:
        atoms = structure_to_atoms(structure)
    except Exception as err:  # e.g. partial occupancies
        result.status, result.reason = STATUS_REJECTED, f"input: unsupported structure: {err}"
        return result, None
    if len(atoms) == 0 or atoms.get_volume() <= 0:
        reason = "empty structure or zero cell volume"
    else:
        reason = _overlap_reason(atoms, config.min_distance) or _density_reason(atoms)
    if reason:
        result.status, result.reason = STATUS_REJECTED, f"input: {reason}"
        return result, None
    return result, atoms


def finish_result(
    result: RelaxResult, initial: Structure, atoms: Atoms, v0: float, start: float
) -> RelaxResult:
    """Fill in the final geometry, per-atom energy, volume ratio, RMSD and wall time."""
    final = atoms_to_structure(atoms)
    result.structure = structure_to_json(final)
    result.energy_per_atom = result.energy / len(atoms)
    result.volume_ratio = float(atoms.get_volume() / v0)
    result.rmsd = displacement_rmsd(initial, final)
    result.wall_s = time.perf_counter() - start
    return result


def relax_structure(
    structure: Structure,
    calculator: Calculator,
    config: RelaxConfig | None = None,
    candidate_id: str = "",
) -> RelaxResult:
    """Relax one structure (positions + cell) with FIRE; never raises for a bad candidate.

    Parameters
    ----------
    structure
        The initial structure.
    calculator
        An ASE calculator (see :func:`tasks.mlip.load_mlip`).
    config
        Relaxation settings; default :class:`RelaxConfig`.
    candidate_id
        Copied into the result.

    Returns
    -------
    RelaxResult
        Relaxed structure and energies, or ``failed`` / ``rejected`` with a reason.
    """
    config = config or RelaxConfig()
    start = time.perf_counter()
    deadline = start + config.time_budget_s if config.time_budget_s else None
    result, atoms = screen_input(structure, config, candidate_id)
    if atoms is None:
        return result
    v0 = atoms.get_volume()
    atoms.calc = calculator
    try:
        if config.fix_symmetry:
            atoms.set_constraint(FixSymmetry(atoms, symprec=config.symprec))
        target = FrechetCellFilter(atoms)
        if config.single_point:
            check_progress(
                atoms, atoms.get_potential_energy(), atoms.get_forces(), v0, config, None
            )
        else:
            optimizer = FIRE(target, logfile=None)
            for _ in optimizer.irun(fmax=config.fmax, steps=config.steps):
                check_progress(
                    atoms, atoms.get_potential_energy(), atoms.get_forces(), v0, config, deadline
                )
            result.steps = optimizer.nsteps
        forces = target.get_forces()
        result.fmax = float(np.sqrt((forces**2).sum(axis=1).max()))
        result.converged = result.fmax < config.fmax
        result.energy = float(atoms.get_potential_energy())
    except RelaxStopError as stop:
        result.status, result.reason = STATUS_FAILED, str(stop)
    except Exception as err:  # a calculator bug must not stop the batch
        result.status, result.reason = (
            STATUS_FAILED,
            f"calculator error: {type(err).__name__}: {err}",
        )
    atoms.set_constraint()
    return finish_result(result, structure, atoms, v0, start)


def _calculator(mlip: MLIPConfig) -> Calculator:
    """The process-wide calculator of ``mlip`` (loaded once per worker process)."""
    key = mlip.model_dump_json()
    if key not in _CALCULATORS:
        _CALCULATORS[key] = load_mlip(mlip).calculator()
    return _CALCULATORS[key]


def _rejected(candidate_id: str, reason: str) -> RelaxResult:
    return RelaxResult(id=candidate_id, status=STATUS_REJECTED, reason=reason)


def parse_item(item: Item) -> Structure | RelaxResult:
    """The structure of an ``(id, structure JSON)`` item, or its ``rejected`` row."""
    candidate_id, text = item
    try:
        return structure_from_json(text)
    except Exception as err:
        return _rejected(candidate_id, f"unreadable structure: {err}")


def save_chunk(rows: Sequence[RelaxResult], out_path: Path | None) -> pd.DataFrame:
    """A chunk's results as a table, written atomically to ``out_path`` when given."""
    frame = results_frame(rows)
    if out_path is not None:
        atomic_write(out_path, lambda tmp: frame.to_parquet(tmp, index=False))
    return frame


def relax_chunk(
    items: Sequence[Item],
    mlip: MLIPConfig,
    config: RelaxConfig,
    out_path: Path | None = None,
) -> pd.DataFrame:
    """Relax a chunk of candidates in this process; the unit of work of every scheduler.

    With ``config.scheduler == "batched"`` the chunk is one batch on the model
    (:func:`tasks.relax_batched.relax_chunk_batched`); otherwise one ASE loop per candidate.

    Parameters
    ----------
    items
        ``(id, structure JSON)`` pairs.
    mlip, config
        MLIP and relaxation settings.
    out_path
        If given, the chunk's table is written there atomically before returning.

    Returns
    -------
    pandas.DataFrame
        One :class:`RelaxResult` row per item, in input order.
    """
    if config.scheduler == "batched":
        from tasks.relax_batched import relax_chunk_batched  # imports torch-sim

        return relax_chunk_batched(items, mlip, config, out_path)
    import torch

    torch.set_num_threads(config.torch_threads)
    backend = load_mlip(mlip)
    calculator = _calculator(mlip)
    rows = []
    for candidate_id, text in items:
        structure = parse_item((candidate_id, text))
        if isinstance(structure, RelaxResult):
            rows.append(structure)
            continue
        result = relax_structure(structure, calculator, config, candidate_id)
        result.mlip, result.mlip_version = backend.name, backend.version
        log.debug("%s: %s %s in %d steps", candidate_id, result.status, result.reason, result.steps)
        rows.append(result)
    return save_chunk(rows, out_path)


def results_frame(results: Sequence[RelaxResult]) -> pd.DataFrame:
    """Results as a DataFrame with the :class:`RelaxResult` columns."""
    columns = list(RelaxResult.__dataclass_fields__)
    return pd.DataFrame([asdict(r) for r in results], columns=columns)


def _chunk_name(items: Sequence[Item]) -> str:
    digest = hashlib.sha256("\n".join(i for i, _ in items).encode()).hexdigest()[:16]
    return f"chunk-{digest}.parquet"


def _n_workers(config: RelaxConfig) -> int:
    if config.n_workers:
        return config.n_workers
    return usable_cores()


def _set_worker_threads(threads: int) -> None:
    """Thread limits inherited by spawned workers (before numpy/torch load there)."""
    for name in _THREAD_ENV:
        os.environ[name] = str(threads)


def _run_process_pool(
    chunks: list[list[Item]], paths: list[Path | None], mlip: MLIPConfig, config: RelaxConfig
) -> list[pd.DataFrame]:
    _set_worker_threads(config.torch_threads)
    workers = min(_n_workers(config), len(chunks))
    frames = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            pool.submit(relax_chunk, chunk, mlip, config, path): chunk
            for chunk, path in zip(chunks, paths, strict=True)
        }
        for future in as_completed(futures):
            frames.append(_collect(future.result, futures[future]))
    return frames


def _run_dask(
    chunks: list[list[Item]], paths: list[Path | None], mlip: MLIPConfig, config: RelaxConfig
) -> list[pd.DataFrame]:
    import dask
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    if config.scheduler_address:
        cluster, client = None, Client(config.scheduler_address)
    else:
        _set_worker_threads(config.torch_threads)
        with dask.config.set(dask_worker_config()):
            cluster = LocalCluster(
                n_workers=min(_n_workers(config), len(chunks)),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
        client = Client(cluster)
    try:
        futures = client.map(
            relax_chunk, chunks, [mlip] * len(chunks), [config] * len(chunks), paths, pure=False
        )
        index = {f.key: c for f, c in zip(futures, chunks, strict=True)}
        return [_collect(f.result, index[f.key]) for f in dask_completed(futures)]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _relax_job(job: tuple[list[Item], MLIPConfig, RelaxConfig, Path | None]) -> pd.DataFrame:
    """One chunk as a :data:`tasks.mapping.Mapper` job (errors become failed rows)."""
    chunk, mlip, config, path = job
    return _collect(partial(relax_chunk, chunk, mlip, config, path), chunk)


def _collect(get: Callable[[], pd.DataFrame], chunk: list[Item]) -> pd.DataFrame:
    """A chunk's results, or its items marked failed when the worker died (not saved)."""
    try:
        return get()
    except Exception as err:
        log.error("chunk of %d candidates lost: %s: %s", len(chunk), type(err).__name__, err)
        reason = f"worker failed: {type(err).__name__}: {err}"
        return results_frame(
            [RelaxResult(id=i, status=STATUS_FAILED, reason=reason) for i, _ in chunk]
        )


def relax_items(
    items: Sequence[Item],
    mlip: MLIPConfig | None = None,
    config: RelaxConfig | None = None,
    chunk_dir: Path | None = None,
    mapper: Mapper | None = None,
) -> pd.DataFrame:
    """Relax many candidates in chunks with the configured scheduler.

    With ``scheduler: batched`` each chunk is one batch on the model (the GPU path); without
    a ``mapper`` the chunks then run one after the other in this process.

    Parameters
    ----------
    items
        ``(id, structure JSON)`` pairs.
    mlip, config
        MLIP and relaxation settings (defaults: CHGNet, :class:`RelaxConfig`).
    chunk_dir
        If given, each chunk's table is written there as soon as it finishes.
    mapper
        Runs the chunks instead of ``config.scheduler`` (the Prefect flow's Dask tasks).

    Returns
    -------
    pandas.DataFrame
        One row per item, in input order.
    """
    mlip, config = mlip or MLIPConfig(), config or RelaxConfig()
    load_mlip(mlip)  # fail fast on a missing model, before starting workers
    if config.scheduler == "batched":
        from tasks.relax_batched import check_batched

        check_batched(mlip, config)  # fail fast on an MLIP or setting it cannot run
    if not items:
        return results_frame([])
    size = config.chunk_size
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    paths = [chunk_dir / _chunk_name(c) if chunk_dir else None for c in chunks]
    where = "mapper" if mapper is not None else config.scheduler
    log.info("relaxing %d candidates in %d chunks (%s)", len(items), len(chunks), where)
    if mapper is not None:
        frames = mapper(
            _relax_job, [(c, mlip, config, p) for c, p in zip(chunks, paths, strict=True)]
        )
    elif config.scheduler in ("serial", "batched") or (
        config.scheduler == "process" and len(chunks) == 1
    ):
        frames = [
            _collect(partial(relax_chunk, c, mlip, config, p), c)
            for c, p in zip(chunks, paths, strict=True)
        ]
    elif config.scheduler == "process":
        frames = _run_process_pool(chunks, paths, mlip, config)
    else:
        frames = _run_dask(chunks, paths, mlip, config)
    order = {candidate_id: k for k, (candidate_id, _) in enumerate(items)}
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values("id", key=lambda s: s.map(order)).reset_index(drop=True)


def load_candidates(path: str | Path) -> tuple[list[Item], pd.DataFrame]:
    """Read candidates from a records parquet, an extxyz file or a CSV with a ``cif`` column.

    Parameters
    ----------
    path
        ``*.parquet`` (columns ``id``, ``structure``; only ``status == ok`` rows if a
        ``status`` column exists), ``*.extxyz`` / ``*.xyz`` (id from ``atoms.info['id']``,
        else ``<stem>-<index>``) or ``*.csv[.gz]`` (``cif`` plus ``material_id`` or ``id``).

    Returns
    -------
    items, rejects
        Readable candidates as ``(id, structure JSON)``, and a results table of the
        unreadable or duplicated ones (status ``rejected`` with the reason).
    """
    path = Path(path)
    name = path.name.lower()
    raw: list[tuple[str, Callable[[], Structure]]]
    if name.endswith(".parquet"):
        frame = pd.read_parquet(path)
        if "status" in frame:
            frame = frame[frame["status"] == STATUS_OK]
        raw = [
            (str(i), lambda s=s: structure_from_json(s))
            for i, s in zip(frame["id"], frame["structure"], strict=True)
        ]
    elif name.endswith((".extxyz", ".xyz")):
        from ase.io import iread

        raw = [
            (
                str(a.info.get("id", f"{path.stem}-{k:05d}")),
                lambda a=a: AseAtomsAdaptor.get_structure(a),
            )
            for k, a in enumerate(iread(path, index=":"))
        ]
    elif name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(path)
        id_column = "material_id" if "material_id" in frame else "id"
        raw = [
            (str(i), lambda c=c: Structure.from_str(c, fmt="cif"))
            for i, c in zip(frame[id_column], frame["cif"], strict=True)
        ]
    else:
        raise ValueError(f"{path}: unsupported candidate file (use .parquet, .extxyz or .csv)")
    items: list[Item] = []
    rejects: list[RelaxResult] = []
    seen: set[str] = set()
    for candidate_id, read in raw:
        if candidate_id in seen:
            rejects.append(_rejected(candidate_id, "duplicate id"))
            continue
        seen.add(candidate_id)
        try:
            with warnings.catch_warnings():  # pymatgen's CIF rounding notes, one per row
                warnings.simplefilter("ignore")
                items.append((candidate_id, structure_to_json(read())))
        except Exception as err:
            rejects.append(_rejected(candidate_id, f"unreadable structure: {err}"))
    return items, results_frame(rejects)


def finished_ids(chunk_dir: Path) -> set[str]:
    """Ids already present in the chunk files of a previous (possibly interrupted) run."""
    ids: set[str] = set()
    for chunk in sorted(chunk_dir.glob("chunk-*.parquet")):
        ids.update(pd.read_parquet(chunk, columns=["id"])["id"])
    return ids


def run_relax(
    candidates: str | Path,
    out_dir: str | Path,
    mlip: MLIPConfig | None = None,
    config: RelaxConfig | None = None,
    mapper: Mapper | None = None,
) -> Path:
    """Relax a candidate file into ``out_dir``; resumable.

    Writes ``chunks/chunk-*.parquet`` as chunks finish, then ``relaxed.parquet`` (all
    candidates, :class:`RelaxResult` columns, input order), ``relaxed.extxyz`` (the ``ok``
    structures with ``id`` and ``energy`` in ``info``) and ``relax_meta.json`` (MLIP,
    settings, counts). Ids already in ``chunks/`` are not relaxed again.

    Parameters
    ----------
    candidates
        Candidate file (see :func:`load_candidates`).
    out_dir
        Output directory (created).
    mlip, config
        MLIP and relaxation settings.
    mapper
        Runs the chunks instead of ``config.scheduler`` (see :func:`relax_items`).

    Returns
    -------
    Path
        The ``relaxed.parquet`` path.
    """
    mlip, config = mlip or MLIPConfig(), config or RelaxConfig()
    backend = load_mlip(mlip)
    out = Path(out_dir)
    chunk_dir = out / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)
    items, rejects = load_candidates(candidates)
    done = finished_ids(chunk_dir)
    todo = [item for item in items if item[0] not in done]
    log.info(
        "%d candidates, %d already relaxed, %d to do", len(items), len(items) - len(todo), len(todo)
    )
    start = time.perf_counter()
    fresh = relax_items(todo, mlip, config, chunk_dir, mapper)
    elapsed = time.perf_counter() - start
    saved = [pd.read_parquet(p) for p in sorted(chunk_dir.glob("chunk-*.parquet"))]
    saved_ids = set().union(*(set(f["id"]) for f in saved))
    # chunks lost to a worker crash are not in chunks/ (a rerun retries them)
    lost = fresh[~fresh["id"].isin(saved_ids)]
    if len(lost):
        log.error("%d candidates lost to worker failures; rerun to retry them", len(lost))
    wanted = {i for i, _ in items} | set(rejects["id"])
    frame = pd.concat([rejects, *saved, lost], ignore_index=True)
    frame = frame[frame["id"].isin(wanted)].drop_duplicates("id", keep="last")
    order = {candidate_id: k for k, (candidate_id, _) in enumerate(items)}
    frame = frame.sort_values("id", key=lambda s: s.map(lambda i: order.get(i, -1)))
    frame = frame.reset_index(drop=True)
    path = atomic_write(out / "relaxed.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    _write_extxyz(frame, out / "relaxed.extxyz")
    counts = frame["status"].value_counts().to_dict()
    write_json_atomic(
        out / "relax_meta.json",
        {
            "mlip": mlip.model_dump(mode="json"),
            "mlip_name": backend.name,
            "mlip_version": backend.version,
            "relax": config.model_dump(mode="json"),
            "single_point": config.single_point,
            "candidates": str(candidates),
            "n_candidates": len(items) + len(rejects),
            "n_relaxed_this_run": len(todo),
            "n_lost_to_worker_failures": len(lost),
            "status_counts": counts,
            "n_converged": int(frame["converged"].astype(bool).sum()),
            "wall_s": elapsed,
        },
    )
    return path


def _write_extxyz(frame: pd.DataFrame, path: Path) -> None:
    from ase.io import write

    images = []
    for row in frame[frame["status"] == STATUS_OK].itertuples():
        atoms = structure_to_atoms(structure_from_json(row.structure))
        atoms.info.update(id=row.id, energy_mlip=row.energy, converged=bool(row.converged))
        images.append(atoms)
    atomic_write(path, lambda tmp: write(tmp, images, format="extxyz"))
