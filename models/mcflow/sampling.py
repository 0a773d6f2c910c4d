"""MCFlow inference: one integrator for every path through the (t, s) time square.

- DNG: ``(λ, λ)`` — types and structure generated together;
- CSP: ``(1, λ)`` — types given, structure generated;
- ATG: ``(λ, 1)`` — structure given, types generated; with some types given it is
  substitution (known sites are overwritten with their types at every step).

The structure follows Euler steps of the predicted velocities; masked types unmask in a
step with probability ``Δt / (1 − t)`` to a draw from the softmax of the logits (the last
step unmasks everything). With ``anneal_slope`` c > 0 (FlowMM's inference
anti-annealing, not in the MCFlow paper) the coordinate velocity is scaled by ``1 + c·s``,
a step never moving an atom past its predicted place. Noisy guidance (single-sample
CSP/ATG) mixes the prediction given the clean context with one given a context corrupted
to level σ:
``u = (1 − ω)·u(noisy) + ω·u(clean)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure
from tqdm.auto import tqdm

from models.mcflow.data import MASK_TOKEN
from models.mcflow.flows import (
    angles_to_units,
    interpolate_coords,
    linear,
    mask_types,
    remove_mean_translation,
    sample_angles_prior,
    sample_coords_prior,
    sample_lengths_prior,
    units_to_angles,
)
from models.mcflow.model import MCFlowNet, MCFlowOutput

log = logging.getLogger(__name__)

Task = Literal["dng", "csp", "atg"]


@dataclass
class SampleSpec:
    """What is known about one sample before generation.

    Attributes
    ----------
    n_atoms
        Atoms in the cell.
    types
        ``(N,)`` element indices, ``-1`` where unknown; None = all unknown.
    frac, lengths, angles
        The fixed structure for ATG (``lengths`` as ``length / N^(1/3)``, angles in
        degrees); None when the structure is generated.
    """

    n_atoms: int
    types: np.ndarray | None = None
    frac: np.ndarray | None = None
    lengths: np.ndarray | None = None
    angles: np.ndarray | None = None


@dataclass
class Generated:
    """One generated crystal (numpy): element indices, frac coords, lengths (Å), angles (°)."""

    types: np.ndarray
    frac: np.ndarray
    lengths: np.ndarray
    angles: np.ndarray


@dataclass(frozen=True)
class Guidance:
    """Noisy-guidance weight ``ω`` and corruption level ``σ``."""

    omega: float = 2.0
    sigma: float = 0.1


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


class _Batch:
    """Padded state of one sampling batch."""

    def __init__(
        self, specs: Sequence[SampleSpec], task: Task, model: MCFlowNet, gen: torch.Generator
    ) -> None:
        device = model.length_mu.device
        B, N = len(specs), max(sp.n_atoms for sp in specs)
        self.mask = torch.zeros(B, N, dtype=torch.bool, device=device)
        self.known = torch.full((B, N), -1, dtype=torch.long, device=device)
        for b, sp in enumerate(specs):
            self.mask[b, : sp.n_atoms] = True
            if sp.types is not None:
                self.known[b, : sp.n_atoms] = torch.as_tensor(sp.types, device=device)
        self.is_known = self.known >= 0
        self.types = torch.where(self.is_known, self.known, torch.full_like(self.known, MASK_TOKEN))
        if task == "atg":
            self.frac = torch.zeros(B, N, 3, device=device)
            lengths, angles = [], []
            for b, sp in enumerate(specs):
                if sp.frac is None or sp.lengths is None or sp.angles is None:
                    raise ValueError("ATG needs the structure of every sample")
                self.frac[b, : sp.n_atoms] = torch.as_tensor(sp.frac, dtype=torch.float32)
                lengths.append(sp.lengths)
                angles.append(sp.angles)
            self.lengths = torch.as_tensor(np.stack(lengths), dtype=torch.float32, device=device)
            self.angle_units = angles_to_units(
                torch.as_tensor(np.stack(angles), dtype=torch.float32, device=device)
            )
        else:
            self.frac = sample_coords_prior(torch.Size((B, N, 3)), gen, device)
            self.lengths = sample_lengths_prior(model.length_mu, model.length_sigma, B, gen)
            self.angle_units = sample_angles_prior(B, gen, device)


def _forward(model: MCFlowNet, st: _Batch, types, frac, lengths, units, t, s) -> MCFlowOutput:
    B = st.mask.shape[0]
    device = st.mask.device
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else nullcontext()
    )
    with autocast:
        return model(
            types,
            frac,
            lengths,
            units,
            torch.full((B,), float(t), device=device),
            torch.full((B,), float(s), device=device),
            st.mask,
        )


def coord_step_fraction(s: float, ds: float, anneal_slope: float = 0.0) -> float:
    """Fraction of the predicted displacement ``wrap(F̂_1 − F_s)`` one Euler step moves.

    The velocity is ``(1 + anneal_slope·s)·wrap(F̂_1 − F_s)/(1 − s)``; the fraction is
    capped at 1, so a step never carries an atom past its predicted clean position.

    >>> coord_step_fraction(0.5, 0.1)
    0.2
    >>> coord_step_fraction(0.5, 0.1, anneal_slope=10.0)
    1.0
    """
    return min(1.0, ds * (1.0 + anneal_slope * s) / (1.0 - s))


@torch.no_grad()
def _run_batch(
    model: MCFlowNet,
    specs: Sequence[SampleSpec],
    task: Task,
    steps: int,
    gen: torch.Generator,
    guidance: Guidance | None,
    anneal_slope: float,
) -> list[Generated]:
    st = _Batch(specs, task, model, gen)
    gen_types = task in ("dng", "atg")
    gen_struct = task in ("dng", "csp")
    device = st.mask.device
    for i in range(steps):
        lam, dt = i / steps, 1.0 / steps
        t = lam if gen_types else 1.0
        s = lam if gen_struct else 1.0
        out = _forward(model, st, st.types, st.frac, st.lengths, st.angle_units, t, s)
        disp, l_hat, u_hat = out.coord_disp, out.lengths, out.angle_units
        logits = out.type_logits
        if guidance is not None and task == "csp":
            sig = guidance.sigma
            noisy_types = mask_types(
                st.types, torch.full((len(specs),), sig, device=device), st.mask, gen
            )
            noisy = _forward(model, st, noisy_types, st.frac, st.lengths, st.angle_units, sig, s)
            w = guidance.omega
            disp = (1 - w) * noisy.coord_disp + w * disp
            l_hat = ((1 - w) * noisy.lengths + w * l_hat).clamp(min=1e-3)
            u_hat = (1 - w) * noisy.angle_units + w * u_hat
        elif guidance is not None and task == "atg":
            sig = guidance.sigma
            sig_b = torch.full((len(specs),), sig, device=device)
            f_n = interpolate_coords(
                sample_coords_prior(st.frac.shape, gen, device), st.frac, sig_b
            )
            l_n = linear(
                sample_lengths_prior(model.length_mu, model.length_sigma, len(specs), gen),
                st.lengths,
                sig_b,
            )
            u_n = linear(sample_angles_prior(len(specs), gen, device), st.angle_units, sig_b)
            noisy = _forward(model, st, st.types, f_n, l_n, u_n, t, sig)
            w = guidance.omega
            mixed = (1 - w) * torch.log_softmax(noisy.type_logits, -1) + w * torch.log_softmax(
                logits, -1
            )
            logits = mixed.masked_fill(~model.allowed_types, float("-inf"))
        if gen_struct:
            if model.flow.translation_free:
                disp = remove_mean_translation(disp, st.mask)
            k = dt / (1.0 - lam)
            k_coords = coord_step_fraction(lam, dt, anneal_slope)
            st.frac = torch.remainder(st.frac + k_coords * disp, 1.0)
            st.lengths = st.lengths + k * (l_hat - st.lengths)
            st.angle_units = st.angle_units + k * (u_hat - st.angle_units)
        if gen_types:
            p_unmask = dt / (1.0 - lam)
            u = torch.rand(st.types.shape, generator=gen, device=device)
            gumbel = -torch.log(
                -torch.log(torch.rand(logits.shape, generator=gen, device=device).clamp(min=1e-20))
            )
            draws = torch.argmax(logits + gumbel, dim=-1)
            unmask = (st.types == MASK_TOKEN) & st.mask & (u < p_unmask)
            st.types = torch.where(unmask, draws, st.types)
            st.types = torch.where(st.is_known, st.known, st.types)
    results = []
    lengths = st.lengths.float().cpu().numpy()
    angles = units_to_angles(st.angle_units.float()).cpu().numpy()
    types = st.types.cpu().numpy()
    frac = st.frac.float().cpu().numpy()
    for b, sp in enumerate(specs):
        n = sp.n_atoms
        results.append(
            Generated(
                types=types[b, :n],
                frac=frac[b, :n] if task != "atg" else np.asarray(sp.frac),
                lengths=lengths[b] * n ** (1 / 3),
                angles=angles[b] if task != "atg" else np.asarray(sp.angles),
            )
        )
    return results


def generate(
    model: MCFlowNet,
    specs: Sequence[SampleSpec],
    task: Task,
    steps: int,
    seed: int,
    batch_size: int = 256,
    guidance: Guidance | None = None,
    anneal_slope: float = 0.0,
    progress: bool = False,
) -> list[Generated]:
    """Generate one crystal per spec.

    Parameters
    ----------
    model
        A trained network (in eval mode, on its device).
    specs
        What is known about each sample (see :class:`SampleSpec`).
    task
        ``dng``, ``csp`` or ``atg`` (substitution is ATG with partly known types).
    steps
        Integration steps from 0 to 1.
    seed
        Batch ``i`` uses a ``torch.Generator`` seeded from ``(seed, i)``: the same seed,
        specs and batch size give the same crystals.
    batch_size
        Samples per forward pass.
    guidance
        Noisy guidance (CSP/ATG only) or None.
    anneal_slope
        Coordinate velocity scale ``1 + anneal_slope·s`` (0 = the paper's sampler); each
        step moves an atom at most to its predicted clean position.
    progress
        Show a progress bar over batches.
    """
    if task == "dng" and guidance is not None:
        raise ValueError("noisy guidance applies to CSP and ATG only")
    if anneal_slope < 0:
        raise ValueError(f"anneal_slope must be >= 0, got {anneal_slope}")
    model.eval()
    device = model.length_mu.device
    out: list[Generated] = []
    starts = range(0, len(specs), batch_size)
    for i, start in enumerate(tqdm(starts, desc=f"mcflow {task}", disable=not progress)):
        gen = torch.Generator(device=device).manual_seed(_seed(seed, i))
        batch = specs[start : start + batch_size]
        out.extend(_run_batch(model, batch, task, steps, gen, guidance, anneal_slope))
    return out


def to_structure(crystal: Generated) -> Structure:
    """Build a pymatgen structure from a generated crystal.

    Raises
    ------
    ValueError
        With the reason, when values are not finite or the cell parameters do not form a
        lattice of positive volume.
    """
    values = np.concatenate([crystal.frac.ravel(), crystal.lengths, crystal.angles])
    if not np.all(np.isfinite(values)):
        raise ValueError("non-finite coordinates or cell parameters")
    if (crystal.types < 0).any() or (crystal.types >= MASK_TOKEN).any():
        raise ValueError("an atom type was left masked")
    lattice = Lattice.from_parameters(*crystal.lengths.tolist(), *crystal.angles.tolist())
    if not np.isfinite(lattice.volume) or lattice.volume <= 0:
        raise ValueError(
            f"cell parameters {crystal.lengths.round(3).tolist()} / "
            f"{crystal.angles.round(2).tolist()} do not form a lattice"
        )
    species = [Element.from_Z(int(z) + 1) for z in crystal.types]
    return Structure(lattice, species, np.mod(crystal.frac, 1.0))
