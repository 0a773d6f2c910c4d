"""Batched MLIP relaxation: a chunk of candidates as one batch on the model (the GPU path).

:func:`relax_chunk_batched` relaxes all candidates of a chunk together with torch-sim:
``torch_sim.optimizers.frechet_cell_fire`` in its ``ase_fire`` flavour, the FIRE parameters
and Fréchet cell parametrisation of ASE's ``FIRE`` on a ``FrechetCellFilter``, with one model
call per FIRE step for the whole batch. Bookkeeping is per candidate and gives the same
:class:`tasks.mlip.results.RelaxResult` rows as :func:`tasks.mlip.ase_engine.relax_structure`:
inputs are screened by :func:`tasks.mlip.guards.screen_input`, every step is checked by
:func:`tasks.mlip.guards.check_progress` (non-finite energy or forces, volume explosion or
collapse, overlapping atoms, time budget), convergence is ASE's (the largest force row of
the Fréchet filter below ``fmax``), and a candidate that converges, reaches the step limit
or is stopped leaves the batch at once with its own step count while the others go on.
Trajectories differ from the ASE loop only by floating-point summation order and one detail
of torch-sim's FIRE (it decays the mixing parameter before mixing, ASE after), so final
energies agree closely, not bit for bit.

Differences from the ASE loop, all forced by sharing one model call:

- only MACE models (torch-sim 0.3.0 wraps neither CHGNet nor matgl) and no ``fix_symmetry``
  (torch-sim 0.3.0 has no symmetry constraint); :func:`check_batched` refuses both;
- the time budget counts from the start of the batch;
- a non-finite stress stops its candidate at once (it would poison the next cell update);
- an exception in the model fails every candidate still in the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch_sim
from ase import Atoms
from ase.data import chemical_symbols
from pymatgen.core import Structure

from tasks.core.records import STATUS_FAILED
from tasks.mlip.backends import MACEBackend, mace_import_guard
from tasks.mlip.guards import RelaxStopError, check_progress, finish_result, screen_input
from tasks.mlip.results import Item, RelaxResult, parse_item, results_frame
from tasks.mlip.settings import BATCHED_SYMMETRY_ERROR, MLIPConfig, RelaxConfig

if TYPE_CHECKING:
    from torch_sim.models.mace import MaceModel
    from torch_sim.optimizers import FrechetCellFIREState

log = logging.getLogger(__name__)

_MODELS: dict[str, MaceModel] = {}


@dataclass
class _Candidate:
    """One candidate in a batch: its result row, initial structure and current geometry."""

    result: RelaxResult
    initial: Structure
    atoms: Atoms
    v0: float


def check_batched(mlip: MLIPConfig, config: RelaxConfig) -> None:
    """Refuse an MLIP or setting the batched path cannot honour.

    Raises
    ------
    ValueError
        The MLIP is not MACE, or ``config.fix_symmetry`` is set.
    """
    if mlip.name != "mace":
        raise ValueError(
            f"batched relaxation (engine 'batched') supports MACE models only, not "
            f"{mlip.name!r} (torch-sim 0.3.0 has no {mlip.name} wrapper); use engine "
            "'ase' for this MLIP"
        )
    if config.fix_symmetry:
        raise ValueError(BATCHED_SYMMETRY_ERROR)


def batched_model(mlip: MLIPConfig) -> MaceModel:
    """The process-wide torch-sim MACE model of ``mlip`` (float64 on ``mlip.device``).

    The ``.model`` file is the one :class:`tasks.mlip.backends.MACEBackend` resolves, loaded
    once per process, in float64 like the ASE calculator.
    """
    key = mlip.model_dump_json()
    if key not in _MODELS:
        path = MACEBackend(mlip).path
        device = torch.device(mlip.device)
        with mace_import_guard():
            from torch_sim.models.mace import MaceModel

            module = torch.load(path, map_location=device, weights_only=False)
        _MODELS[key] = MaceModel(module, device=device, dtype=torch.float64)
    return _MODELS[key]


def _filter_fmax(state: FrechetCellFIREState) -> torch.Tensor:
    """Per system, the largest force row of ASE's ``FrechetCellFilter`` (its convergence test).

    The rows are the atomic forces in the undeformed frame (``f @ F``) and the three rows of
    the cell force on log(F), divided by the number of atoms as ASE does.
    """
    deform = state.deform_grad()
    atom_rows = torch.bmm(state.forces.unsqueeze(1), deform[state.system_idx]).squeeze(1)
    atom_max = torch.zeros(state.n_systems, device=state.device, dtype=state.dtype)
    atom_max = atom_max.scatter_reduce(
        0, state.system_idx, atom_rows.norm(dim=1), reduce="amax", include_self=False
    )
    return torch.maximum(atom_max, state.cell_forces.norm(dim=2).amax(dim=1))


def _sync(
    state: FrechetCellFIREState, batch: list[_Candidate]
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """Copy each system's geometry into its candidate's ``atoms``.

    Returns
    -------
    energy, forces, fmax, finite_stress
        Per candidate: energy (eV), forces (eV/Å), the Fréchet filter's largest force row
        and whether its stress is finite.
    """
    energy, forces, positions, cells, fmax = (
        t.detach().cpu().numpy()
        for t in (
            state.energy, state.forces, state.positions, state.row_vector_cell,
            _filter_fmax(state),
        )
    )  # fmt: skip
    finite_stress = torch.isfinite(state.stress).flatten(1).all(dim=1).cpu().numpy()
    bounds = np.cumsum([0, *(len(c.atoms) for c in batch)])
    for k, candidate in enumerate(batch):
        candidate.atoms.cell = cells[k]
        candidate.atoms.positions = positions[bounds[k] : bounds[k + 1]]
    return energy, np.split(forces, bounds[1:-1]), fmax, finite_stress


def _leaves(
    candidate: _Candidate,
    values: tuple[float, np.ndarray, float, bool],
    step: int,
    config: RelaxConfig,
    deadline: float | None,
    start: float,
) -> bool:
    """Check one candidate after ``step`` steps; if it leaves the batch, fill in its row.

    ``values`` are its energy, forces, filter fmax and stress finiteness (see :func:`_sync`).
    """
    energy, forces, fmax, finite_stress = values
    result = candidate.result
    try:
        check_progress(candidate.atoms, float(energy), forces, candidate.v0, config, deadline)
        if not finite_stress:
            raise RelaxStopError(f"non-finite stress (E={energy})")
    except RelaxStopError as stop:
        result.status, result.reason = STATUS_FAILED, str(stop)
    else:
        if fmax >= config.fmax and step < config.steps:
            return False
        result.steps, result.fmax = step, float(fmax)
        result.converged = result.fmax < config.fmax
        result.energy = float(energy)
    finish_result(result, candidate.initial, candidate.atoms, candidate.v0, start)
    return True


def _fail_all(batch: list[_Candidate], err: Exception, start: float) -> None:
    """A model error: every candidate still in the batch fails, at its last checked geometry."""
    log.error("model error with %d candidates in the batch: %s", len(batch), err)
    for candidate in batch:
        candidate.result.status = STATUS_FAILED
        candidate.result.reason = f"calculator error: {type(err).__name__}: {err}"
        finish_result(candidate.result, candidate.initial, candidate.atoms, candidate.v0, start)


def _relax_together(batch: list[_Candidate], model: MaceModel, config: RelaxConfig) -> None:
    """Relax screened candidates together; fills in each candidate's result row.

    A candidate leaves the batch (the state is sliced) as soon as it has converged, reached
    ``config.steps`` or been stopped, so the others keep the model to themselves. A
    non-finite energy can spread NaN into the other systems' forces through the shared
    backward pass, so its system is stopped and the evaluation redone without it.
    """
    start = time.perf_counter()
    deadline = None
    if config.time_budget_s and not config.single_point:
        deadline = start + config.time_budget_s
    init_fn, step_fn = torch_sim.optimizers.frechet_cell_fire(model, md_flavor="ase_fire")
    # the state the next evaluation starts from: the input, then the state before each step
    source = torch_sim.io.atoms_to_state([c.atoms for c in batch], model.device, model.dtype)
    # torch-sim's MACE wrapper re-indexes its batch only when the atomic numbers change (as
    # they do when systems leave), not for a new batch with the same numbers in other cells
    model.setup_from_system_idx(source.atomic_numbers, source.system_idx)
    step = 0
    while True:
        try:
            state = init_fn(source) if step == 0 else step_fn(source.clone())
        except Exception as err:  # a model bug must not stop the chunk
            _fail_all(batch, err, start)
            return
        values = list(zip(*_sync(state, batch), strict=True))
        nan_energy = [not np.isfinite(v[0]) for v in values]
        if any(nan_energy) and not all(nan_energy):
            for candidate, value, nan in zip(batch, values, nan_energy, strict=True):
                if nan:
                    _leaves(candidate, value, step, config, deadline, start)
            staying = [k for k, nan in enumerate(nan_energy) if not nan]
            source, batch = source[staying], [batch[k] for k in staying]
            continue
        leaving = [
            _leaves(c, v, step, config, deadline, start) for c, v in zip(batch, values, strict=True)
        ]
        staying = [k for k, gone in enumerate(leaving) if not gone]
        if not staying:
            return
        source = state[staying] if len(staying) < len(batch) else state
        batch = [batch[k] for k in staying]
        step += 1


def relax_chunk_batched(
    items: Sequence[Item], mlip: MLIPConfig, config: RelaxConfig
) -> pd.DataFrame:
    """Relax a chunk of candidates as one batch on the model (torch-sim, MACE).

    Parameters
    ----------
    items
        ``(id, structure JSON)`` pairs.
    mlip, config
        MLIP (MACE) and relaxation settings; the batch runs on ``mlip.device``.

    Returns
    -------
    pandas.DataFrame
        One :class:`tasks.mlip.results.RelaxResult` row per item, in input order, as
        :func:`tasks.mlip.ase_engine.relax_chunk_ase` gives them.

    Raises
    ------
    ValueError
        The MLIP is not MACE, or ``config.fix_symmetry`` is set.
    """
    check_batched(mlip, config)
    torch.set_num_threads(config.torch_threads)
    backend = MACEBackend(mlip)
    name, version = backend.name, backend.version
    model = batched_model(mlip)
    known = {chemical_symbols[z] for z in model.z_table.zs}
    rows: list[RelaxResult] = []
    batch: list[_Candidate] = []
    for candidate_id, text in items:
        structure = parse_item((candidate_id, text))
        if isinstance(structure, RelaxResult):
            rows.append(structure)
            continue
        # an element the model cannot embed is refused here, outside the shared batch
        result, atoms = screen_input(structure, config, candidate_id, known, name)
        result.mlip, result.mlip_version = name, version
        rows.append(result)
        if atoms is not None:
            batch.append(_Candidate(result, structure, atoms, atoms.get_volume()))
    if batch:
        _relax_together(batch, model, config)
    log.debug("batch of %d relaxed, %d rows", len(batch), len(rows))
    return results_frame(rows)
