"""SymADiT generation: space group → orbit count → latent ODE → constrained decoding → crystal.

1. ``g ~ p_train(g)`` (or the user's groups), ``K ~ p_train(K | g)``.
2. Integrate the latent ODE for K tokens with classifier-free guidance on ``g``.
3. Decode with ``g`` given and choose Wyckoff positions and elements jointly, token by token
   in order of confidence, so that a 0-DOF Wyckoff position (a single fixed point orbit) is
   never occupied by two orbits (:func:`constrained_decode`).
4. Symmetrize (project coords onto the chosen positions, tie the cell to the crystal system)
   and expand the batch to pymatgen structures with the vocabulary's orbit operations
   (:func:`expand_tokens`; equal to pyxtal's expansion, without a pyxtal object per sample).

Every requested sample yields a :class:`models.sample_output.SampleRecord`; a sample that
cannot be expanded is a ``failed`` record with the reason. Sampling is reproducible: the
groups, orbit counts and initial noise of sample ``i`` depend only on ``seed`` and ``i``
(all drawn up front), not on the batch size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from pymatgen.core import Element, Structure
from tqdm.auto import tqdm

from models.sample_output import SampleRecord, sample_id
from models.symadit.autoencoder import DecoderOutput, symmetrize_output
from models.symadit.data import TokenBatch
from representation.wyckoff_tokens import WyckoffTokens, expand_batch
from representation.wyckoff_vocab import wyckoff_vocabulary
from tasks.core.checks import closest_pair

log = logging.getLogger(__name__)

MODEL_NAME = "symadit"


def _gumbel(
    shape: torch.Size, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    gdev = generator.device if generator is not None else device
    u = torch.rand(shape, generator=generator, device=gdev).to(device)
    return -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-10)))


@torch.no_grad()
def constrained_decode(
    out: DecoderOutput,
    spacegroup: torch.Tensor,
    mask: torch.Tensor,
    generator: torch.Generator | None = None,
    wyckoff_temperature: float = 0.0,
    element_temperature: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Choose a Wyckoff position and an element per token; no 0-DOF position twice.

    Tokens are assigned greedily, most confident first: at each round every crystal picks,
    among its unassigned tokens, the one whose best *available* position scores highest,
    assigns it, and — if that position has no free parameter — removes it from the
    positions still available to the other tokens. Positions with free parameters can be
    shared (different orbits on the same Wyckoff position with different parameters).
    With a temperature > 0, Gumbel noise (fixed per token and position) turns the argmax
    into sampling from the logits restricted to the available positions.

    Returns
    -------
    (wyckoff, elements)
        ``[B, N]`` long each (0 on padding).
    """
    vocab = wyckoff_vocabulary()
    device = mask.device
    b, n = mask.shape
    index = out.wyckoff_index  # [B, P] global indices of each group's positions
    zero_dof = torch.as_tensor(vocab.dof == 0, device=device)[index]  # [B, P]
    scores = out.wyckoff_local.float()  # [B, N, P], -inf on padding columns
    if wyckoff_temperature > 0:
        scores = scores / wyckoff_temperature + _gumbel(scores.shape, generator, device)
    available = torch.isfinite(out.wyckoff_local[:, 0, :])  # [B, P]
    assigned = ~mask.clone()
    local = torch.zeros((b, n), dtype=torch.long, device=device)
    rows = torch.arange(b, device=device)
    for _ in range(n):
        active = ~assigned.all(dim=1)
        if not bool(active.any()):
            break
        masked = scores.masked_fill(~available[:, None, :], float("-inf"))
        best_val, best_pos = masked.max(dim=-1)  # [B, N]
        best_val = best_val.masked_fill(assigned, float("-inf"))
        token = best_val.argmax(dim=1)  # [B]
        pos = best_pos[rows, token]
        local[rows[active], token[active]] = pos[active]
        assigned[rows[active], token[active]] = True
        used = active & zero_dof[rows, pos]
        available[rows[used], pos[used]] = False
    wyckoff = torch.gather(index, 1, local)
    elem_scores = out.element_logits.float()
    if element_temperature > 0:
        elem_scores = elem_scores / element_temperature + _gumbel(
            elem_scores.shape, generator, device
        )
    elements = elem_scores.argmax(dim=-1)
    zero = torch.zeros_like(wyckoff)
    return torch.where(mask, wyckoff, zero), torch.where(mask, elements, zero)


def batch_to_tokens(batch: TokenBatch) -> list[WyckoffTokens]:
    """Split a (symmetrized) batch back into per-crystal tokens."""
    out = []
    sg = batch.spacegroup.cpu().numpy()
    cell = batch.cell.double().cpu().numpy()
    wyck = batch.wyckoff.cpu().numpy()
    elem = batch.elements.cpu().numpy()
    coords = batch.coords.double().cpu().numpy()
    mask = batch.mask.cpu().numpy()
    for i in range(len(sg)):
        k = mask[i]
        out.append(
            WyckoffTokens(
                spacegroup=int(sg[i]),
                cell=cell[i],
                wyckoff=wyck[i][k].astype(int),
                elements=elem[i][k].astype(int),
                coords=coords[i][k],
            )
        )
    return out


def primitive_cell(structure: Structure, symprec: float = 1e-3) -> Structure:
    """The primitive, Niggli-reduced cell of an (exactly symmetric) conventional cell.

    spglib finds the lattice centering at a tight tolerance and changes the basis without
    idealizing positions (``no_idealize``), so the atoms keep their exact coordinates;
    the result is in the same form as the dataset's records (primitive Niggli cells), which
    keeps atom counts (d_N) comparable. Returns the input unchanged if spglib fails.
    """
    import spglib

    cell: Any = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    try:
        out = spglib.standardize_cell(cell, to_primitive=True, no_idealize=True, symprec=symprec)
    except Exception:  # spglib raises on some degenerate inputs
        out = None
    if out is None:
        return structure
    lattice, frac, numbers = out
    prim = Structure(lattice, [Element.from_Z(int(z)) for z in numbers], frac)
    return prim.get_reduced_structure()


def expand_tokens(
    tokens: Sequence[WyckoffTokens], overlap_tol: float = 0.1, primitive: bool = False
) -> list[tuple[Structure | None, str]]:
    """Expand token sets to structures; ``(None, reason)`` for each that cannot be.

    The whole batch is expanded at once (:func:`expand_batch`, equal to pyxtal's ``build``).
    Two atoms closer than ``overlap_tol`` Å (two orbits on the same point, or an orbit whose
    free parameter sits on a special value so that its images coincide) do not form a
    crystal: spglib cannot even assign a space group to such a cell. They are reported as
    failed samples ("overlapping atoms"), never silently merged. With ``primitive`` the
    conventional cell is reduced to :func:`primitive_cell`.
    """
    expanded = expand_batch([t for t in tokens if t.n_orbits])
    built = iter(expanded)
    out: list[tuple[Structure | None, str]] = []
    for t in tokens:
        if t.n_orbits == 0:
            out.append((None, "no orbits"))
            continue
        structure = next(built)
        if isinstance(structure, str):
            out.append((None, f"expansion failed: {structure}"[:500]))
            continue
        if not np.isfinite(structure.lattice.volume) or structure.lattice.volume <= 0:
            out.append((None, f"degenerate cell (volume {structure.lattice.volume:.3g})"))
            continue
        if overlap_tol > 0:
            pair = closest_pair(structure.lattice.matrix, structure.frac_coords, overlap_tol)
            if pair is not None:
                reason = f"overlapping atoms: min distance {pair[2]:.4f} Å < {overlap_tol} Å"
                out.append((None, reason))
                continue
        out.append((primitive_cell(structure) if primitive else structure, ""))
    return out


def tokens_metadata(tokens: WyckoffTokens) -> dict[str, object]:
    """The per-sample metadata stored in ``SampleRecord.extra``."""
    return {
        "n_orbits": tokens.n_orbits,
        "wyckoff_labels": tokens.labels,
        "elements": [Element.from_Z(int(z)).symbol for z in tokens.elements],
        "tokens": tokens.to_json(),
    }


def plan_samples(
    stats_spacegroups: np.ndarray | None,
    orbit_sampler,
    n: int,
    rng: np.random.Generator,
    spacegroups: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Space groups and orbit counts of ``n`` samples (see :func:`generate`)."""
    if spacegroups:
        groups = np.asarray(list(spacegroups), dtype=np.int64)
        if groups.min() < 1 or groups.max() > 230:
            raise ValueError(f"space groups must be in 1..230, got {sorted(set(groups.tolist()))}")
        g = groups[np.arange(n) % len(groups)]
    elif stats_spacegroups is not None:
        g = stats_spacegroups
    else:
        raise ValueError("give spacegroups or draws from the training distribution")
    k = orbit_sampler(g, rng)
    return g, np.maximum(k, 1)


def batches_by_orbit_count(orbit_counts: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Sample indices in batches of equal orbit count, at most ``batch_size`` each.

    A batch is padded to its largest crystal, and padded tokens cost the network as much as
    real ones; with one orbit count per batch there is no padding at all (at most one
    partial batch per count). Each sample keeps its own noise and id, so the samples do not
    depend on the batching.

    Examples
    --------
    >>> [b.tolist() for b in batches_by_orbit_count(np.array([2, 1, 2, 2, 1]), 2)]
    [[1, 4], [0, 2], [3]]
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batches: list[np.ndarray] = []
    for count in np.unique(orbit_counts):
        same = np.flatnonzero(orbit_counts == count)
        starts = range(0, len(same), batch_size)
        batches.extend(same[start : start + batch_size] for start in starts)
    return batches


@torch.no_grad()
def generate(
    model,
    n: int,
    seed: int = 0,
    steps: int | None = None,
    guidance: float | None = None,
    spacegroups: Sequence[int] | None = None,
    batch_size: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[SampleRecord]:
    """Generate ``n`` crystals with a trained :class:`models.symadit.model.SymADiT`.

    Parameters
    ----------
    model
        The trained model (autoencoder + flow + training statistics).
    n
        Number of samples (one record each, failed ones included).
    seed
        Seeds every random choice; the same seed gives the same samples.
    steps, guidance
        ODE steps and CFG scale (default: the model's sampling config).
    spacegroups
        Requested groups; sample ``i`` uses ``spacegroups[i % len(spacegroups)]``. None
        draws from the training distribution.
    batch_size
        Crystals per ODE batch.
    device
        Where to run (default: the model's device).
    """
    cfg = model.config.sampling
    steps = cfg.steps if steps is None else int(steps)
    guidance = cfg.guidance if guidance is None else float(guidance)
    batch_size = batch_size or cfg.batch_size
    if device is not None:
        model = model.to(device)
    run_device = next(model.parameters()).device
    model.eval()
    stats = model.stats
    rng = np.random.default_rng(seed)
    drawn = None if spacegroups else stats.sample_spacegroups(n, rng)
    g_all, k_all = plan_samples(drawn, stats.sample_orbit_counts, n, rng, spacegroups)
    k_max = int(k_all.max()) if n else 1
    torch_gen = torch.Generator().manual_seed(int(seed))
    noise_all = torch.randn((n, k_max, model.autoencoder.config.latent_dim), generator=torch_gen)
    decode_gen = torch.Generator().manual_seed(int(seed) + 1)
    records: dict[int, SampleRecord] = {}
    use_autocast = run_device.type == "cuda"
    bar = tqdm(total=n, disable=not progress, desc="symadit sample")
    for idx in batches_by_orbit_count(k_all, batch_size):
        k = torch.as_tensor(k_all[idx])
        width = int(k.max())
        mask = (torch.arange(width)[None, :] < k[:, None]).to(run_device)
        g = torch.as_tensor(g_all[idx], dtype=torch.long, device=run_device)
        z = model.flow.sample(
            g,
            mask,
            steps=steps,
            guidance=guidance,
            noise=noise_all[idx, :width],
            autocast=use_autocast,
        )
        out = model.autoencoder.decode(z, g, mask)
        wyckoff, elements = constrained_decode(
            out,
            g,
            mask,
            generator=decode_gen,
            wyckoff_temperature=cfg.wyckoff_temperature,
            element_temperature=cfg.element_temperature,
        )
        sym = symmetrize_output(out, g, mask, stats, wyckoff=wyckoff, elements=elements)
        batch_tokens = batch_to_tokens(sym)
        expanded = expand_tokens(batch_tokens, cfg.overlap_tol, primitive=cfg.cell == "primitive")
        for i, tokens, (structure, reason) in zip(idx, batch_tokens, expanded, strict=True):
            sid = sample_id(MODEL_NAME, seed, int(i))
            meta = tokens_metadata(tokens)
            records[int(i)] = SampleRecord.of(
                sid, MODEL_NAME, "dng", structure, reason,
                spacegroup_requested=int(g_all[i]), extra=meta,
            )  # fmt: skip
        bar.update(len(idx))
    bar.close()
    ordered = [records[i] for i in range(n)]
    n_failed = sum(r.status != "ok" for r in ordered)
    if n_failed:
        log.warning("%d of %d SymADiT samples could not be expanded", n_failed, n)
    return ordered
