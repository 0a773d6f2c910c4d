"""The ASE engine: one FIRE loop on a Fréchet cell filter per candidate (the CPU path).

Measured on this project's 2-core machine, one relaxation per process with one torch thread
is the fastest way to use CPU cores (batching on one CPU model is slower, and torch's default
threading is up to 10x slower when cores are shared); the runner spreads chunks over
processes or Dask workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd
from ase.calculators.calculator import Calculator
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from pymatgen.core import Structure

from tasks.core.records import STATUS_FAILED, structure_to_json
from tasks.mlip.backends import MLIPBackend, load_mlip
from tasks.mlip.guards import RelaxStopError, check_progress, finish_result, screen_input
from tasks.mlip.results import Item, RelaxResult, parse_item, results_frame
from tasks.mlip.settings import MLIPConfig, RelaxConfig

log = logging.getLogger(__name__)


def relax_structure(
    structure: Structure,
    calculator: Calculator,
    config: RelaxConfig | None = None,
    candidate_id: str = "",
    backend: MLIPBackend | None = None,
) -> RelaxResult:
    """Relax one structure (positions + cell) with FIRE; never raises for a bad candidate.

    Parameters
    ----------
    structure
        The initial structure.
    calculator
        An ASE calculator (see :func:`tasks.mlip.backends.load_mlip`).
    config
        Relaxation settings; default :class:`RelaxConfig`.
    candidate_id
        Copied into the result.
    backend
        The MLIP behind ``calculator``: its elements are checked before the model runs, and
        its name and version are recorded.

    Returns
    -------
    RelaxResult
        Relaxed structure and energies, or ``failed`` / ``rejected`` with a reason.
    """
    config = config or RelaxConfig()
    start = time.perf_counter()
    deadline = start + config.time_budget_s if config.time_budget_s else None
    supported = backend.supported_elements(calculator) if backend else None
    name = backend.name if backend else "the MLIP"
    result, atoms = screen_input(structure, config, candidate_id, supported, name)
    if backend is not None:
        result.mlip, result.mlip_version = backend.name, backend.version
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


@cache
def _calculator(mlip_json: str) -> Calculator:
    """The process-wide calculator of an MLIP config (a model is loaded once per worker)."""
    return load_mlip(MLIPConfig.model_validate_json(mlip_json)).calculator()


def single_points(
    structures: Sequence[tuple[str, Structure]],
    backend: MLIPBackend,
    calculator: Calculator,
    config: RelaxConfig,
) -> list[RelaxResult]:
    """Energies at the given geometries (no forces, no relaxation), screened like relaxations.

    The screened structures go to :meth:`MLIPBackend.energies` together (CHGNet batches its
    graphs); when the batch fails, each structure is retried alone so a failure stays its own.
    """
    supported = backend.supported_elements(calculator)
    rows: list[RelaxResult] = []
    todo: list[tuple[RelaxResult, Structure]] = []
    for candidate_id, structure in structures:
        start = time.perf_counter()
        result, atoms = screen_input(structure, config, candidate_id, supported, backend.name)
        result.mlip, result.mlip_version = backend.name, backend.version
        rows.append(result)
        if atoms is not None:
            result.wall_s = time.perf_counter() - start
            todo.append((result, structure))
    if not todo:
        return rows
    start = time.perf_counter()
    try:
        energies = backend.energies(calculator, [s for _, s in todo])
    except Exception:  # isolate the structure the model cannot take
        energies = []
        for _, structure in todo:
            try:
                energies.append(backend.energies(calculator, [structure])[0])
            except Exception as err:
                log.debug("single point failed: %s", err)
                energies.append(float("nan"))
    per_structure = (time.perf_counter() - start) / len(todo)
    for (result, structure), energy in zip(todo, energies, strict=True):
        result.wall_s += per_structure
        if not np.isfinite(energy):
            result.status, result.reason = STATUS_FAILED, f"non-finite energy (E={energy})"
            continue
        result.energy = float(energy)
        result.energy_per_atom = result.energy / len(structure)
        result.structure = structure_to_json(structure)
        result.volume_ratio, result.rmsd = 1.0, 0.0
    return rows


def relax_chunk_ase(items: Sequence[Item], mlip: MLIPConfig, config: RelaxConfig) -> pd.DataFrame:
    """Relax a chunk of candidates one after the other in this process.

    With ``config.steps == 0`` the chunk is a batch of single points (:func:`single_points`).

    Parameters
    ----------
    items
        ``(id, structure JSON)`` pairs.
    mlip, config
        MLIP and relaxation settings.

    Returns
    -------
    pandas.DataFrame
        One :class:`RelaxResult` row per item, in input order.
    """
    import torch

    torch.set_num_threads(config.torch_threads)
    backend = load_mlip(mlip)
    calculator = _calculator(mlip.model_dump_json())
    if config.single_point:
        parsed = [(i, parse_item((i, t))) for i, t in items]
        readable = [(i, s) for i, s in parsed if isinstance(s, Structure)]
        computed = {r.id: r for r in single_points(readable, backend, calculator, config)}
        return results_frame([s if isinstance(s, RelaxResult) else computed[i] for i, s in parsed])
    rows = []
    for candidate_id, text in items:
        structure = parse_item((candidate_id, text))
        if isinstance(structure, RelaxResult):
            rows.append(structure)
            continue
        result = relax_structure(structure, calculator, config, candidate_id, backend)
        log.debug("%s: %s %s in %d steps", candidate_id, result.status, result.reason, result.steps)
        rows.append(result)
    return results_frame(rows)
