"""MCFlow data: records → per-crystal arrays → padded, augmented batches; fitted priors.

Representation of one crystal (primitive Niggli cell, sites in MCFlow order):

- ``types``: element index ``Z − 1`` per atom (``MASK_TOKEN`` marks an unknown type);
- ``frac``: fractional coordinates in ``[0, 1)``;
- ``lengths``: cell lengths divided by ``N^(1/3)`` (the scale the LogNormal prior lives on);
- ``angles``: cell angles in degrees.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from pymatgen.core import Structure

from representation.atom_order import (
    hierarchical_permutation,
    mcflow_order,
    random_translation,
)
from tasks.core.config import StrictModel
from tasks.core.records import structure_from_json

log = logging.getLogger(__name__)

#: Element vocabulary: type index ``Z − 1`` for ``Z = 1..NUM_ELEMENTS``.
NUM_ELEMENTS = 100
#: Index of the MASK token (the base state of the discrete flow).
MASK_TOKEN = NUM_ELEMENTS


@dataclass
class CrystalItem:
    """One crystal as MCFlow sees it (numpy, unpadded)."""

    id: str
    types: np.ndarray  # (N,) int64, Z - 1
    frac: np.ndarray  # (N, 3) float64 in [0, 1)
    lengths: np.ndarray  # (3,) Å / N^(1/3)
    angles: np.ndarray  # (3,) degrees
    orbit_index: np.ndarray  # (N,) non-decreasing orbit ids
    orbit_keys: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.types)


def _orbit_keys(
    structure: Structure, orbit_index: np.ndarray, letters: str
) -> list[tuple[str, str]]:
    n_orbits = int(orbit_index.max()) + 1 if len(orbit_index) else 0
    first = np.searchsorted(orbit_index, np.arange(n_orbits))
    return [(structure[i].species_string, letters[i]) for i in first]


def item_from_structure(
    ident: str,
    structure: Structure,
    orbit_index: Sequence[int] | None = None,
    wyckoff_letters: str | None = None,
) -> CrystalItem:
    """Build a :class:`CrystalItem` from a structure.

    If ``orbit_index`` / ``wyckoff_letters`` are not given the structure is first put
    into MCFlow order with :func:`representation.atom_order.mcflow_order`;
    otherwise its sites are taken to be in that order already (as ingested records are).
    """
    if orbit_index is None or wyckoff_letters is None:
        order = mcflow_order(structure)
        structure = order.structure
        orbit = order.orbit_index
        letters = "".join(order.wyckoff_letters)
    else:
        orbit = np.asarray(orbit_index, dtype=np.int64)
        letters = wyckoff_letters
    n = len(structure)
    lattice = structure.lattice
    return CrystalItem(
        id=ident,
        types=np.array([site.specie.Z - 1 for site in structure], dtype=np.int64),
        frac=np.mod(structure.frac_coords, 1.0),
        lengths=np.asarray(lattice.abc, dtype=np.float64) / n ** (1 / 3),
        angles=np.asarray(lattice.angles, dtype=np.float64),
        orbit_index=orbit,
        orbit_keys=_orbit_keys(structure, orbit, letters),
    )


def items_from_records(frame: pd.DataFrame, max_atoms: int | None = None) -> list[CrystalItem]:
    """Convert ``ok`` dataset records (``tasks.core.records.read_records``) to items."""
    items = []
    skipped = 0
    for row in frame.itertuples(index=False):
        if max_atoms is not None and int(row.n_atoms) > max_atoms:
            skipped += 1
            continue
        structure = structure_from_json(row.structure)
        if any(site.specie.Z > NUM_ELEMENTS for site in structure):
            skipped += 1
            continue
        items.append(item_from_structure(row.id, structure, row.orbit_index, row.wyckoff_letters))
    if skipped:
        log.info(
            "skipped %d records (more than %s atoms or Z > %d)", skipped, max_atoms, NUM_ELEMENTS
        )
    return items


class Priors(StrictModel):
    """Training-set statistics MCFlow samples from.

    Attributes
    ----------
    length_mu, length_sigma
        LogNormal parameters of ``length / N^(1/3)`` per axis (a, b, c).
    n_atoms_counts
        ``{N: count}`` of atoms per primitive cell (DNG draws N from it).
    element_counts
        ``{type index: count}``; types never seen are never generated.
    """

    length_mu: list[float] = Field(min_length=3, max_length=3)
    length_sigma: list[float] = Field(min_length=3, max_length=3)
    n_atoms_counts: dict[int, int]
    element_counts: dict[int, int]

    def sample_n_atoms(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` atom counts from the training distribution."""
        values = np.array(sorted(self.n_atoms_counts), dtype=np.int64)
        probs = np.array([self.n_atoms_counts[v] for v in values], dtype=np.float64)
        return rng.choice(values, size=n, p=probs / probs.sum())

    def allowed_types(self) -> np.ndarray:
        """``(NUM_ELEMENTS,)`` bool: which element indices may be generated."""
        allowed = np.zeros(NUM_ELEMENTS, dtype=bool)
        allowed[list(self.element_counts)] = True
        return allowed


def fit_priors(items: Sequence[CrystalItem]) -> Priors:
    """Fit the LogNormal length prior and the N and element distributions."""
    logs = np.log(np.stack([it.lengths for it in items]))
    elements: Counter[int] = Counter()
    for it in items:
        elements.update(int(t) for t in it.types)
    return Priors(
        length_mu=logs.mean(axis=0).tolist(),
        length_sigma=np.maximum(logs.std(axis=0), 1e-3).tolist(),
        n_atoms_counts=dict(Counter(it.n_atoms for it in items)),
        element_counts=dict(elements),
    )


@dataclass
class MCFlowBatch:
    """A padded batch of clean crystals (tensors; the trainer moves them to the device)."""

    types: torch.Tensor  # [B, N] long (padding: MASK_TOKEN)
    frac: torch.Tensor  # [B, N, 3] float
    lengths: torch.Tensor  # [B, 3] float, Å / N^(1/3)
    angles: torch.Tensor  # [B, 3] float, degrees
    mask: torch.Tensor  # [B, N] bool, True = real atom


def collate(
    items: list[CrystalItem], rng: np.random.Generator, augment: bool = True
) -> MCFlowBatch:
    """Pad items into a batch, optionally augmenting each crystal.

    Augmentation (``augment=True``): a hierarchical permutation (orbits sharing element and
    Wyckoff letter swap places, atoms are shuffled inside each orbit) and one random global
    translation of the fractional coordinates.
    """
    B = len(items)
    n_max = max(it.n_atoms for it in items)
    types = np.full((B, n_max), MASK_TOKEN, dtype=np.int64)
    frac = np.zeros((B, n_max, 3), dtype=np.float32)
    mask = np.zeros((B, n_max), dtype=bool)
    for b, it in enumerate(items):
        t, f = it.types, it.frac
        if augment:
            perm = hierarchical_permutation(it.orbit_index, it.orbit_keys, rng)
            t, f = t[perm], random_translation(f[perm], rng)
        n = it.n_atoms
        types[b, :n] = t
        frac[b, :n] = f
        mask[b, :n] = True
    return MCFlowBatch(
        types=torch.from_numpy(types),
        frac=torch.from_numpy(frac),
        lengths=torch.from_numpy(np.stack([it.lengths for it in items]).astype(np.float32)),
        angles=torch.from_numpy(np.stack([it.angles for it in items]).astype(np.float32)),
        mask=torch.from_numpy(mask),
    )


def items_hash(items: Sequence[CrystalItem]) -> str:
    """Short content hash of a training set (stored in checkpoints)."""
    digest = hashlib.sha256()
    for it in items:
        digest.update(it.id.encode())
        digest.update(np.ascontiguousarray(it.types).tobytes())
        digest.update(np.round(it.frac, 6).tobytes())
    return digest.hexdigest()[:16]
