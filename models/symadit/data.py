"""SymADiT data: Wyckoff tokens → padded tensors, and the training-set distributions.

A batch (:class:`TokenBatch`) holds ``B`` crystals padded to ``N`` orbit tokens:

==============  ==============  =====================================================
field           shape / dtype   meaning
==============  ==============  =====================================================
spacegroup      [B] long        international number 1..230
cell            [B, 6] float    conventional ``a, b, c`` (Å), ``alpha, beta, gamma`` (°)
cell_mask       [B, 6] bool     free cell parameters of the crystal system
wyckoff         [B, N] long     global Wyckoff index (0 on padding)
elements        [B, N] long     atomic number (0 on padding)
coords          [B, N, 3]       fractional coords of each orbit's representative
coord_mask      [B, N, 3] bool  free coordinates of each orbit (False on padding)
mask            [B, N] bool     True for real tokens
==============  ==============  =====================================================

:class:`TokenStats` collects what the model needs from the training set: the space-group
distribution ``p(g)``, the orbit-count distribution ``p(K | g)``, the elements seen and the
normalization of the free cell parameters (log lengths, angles in degrees). It is stored in
every checkpoint as plain JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from representation.wyckoff_tokens import WyckoffTokens, structure_to_tokens
from representation.wyckoff_vocab import CELL_FREE_MASK, crystal_system, wyckoff_vocabulary

log = logging.getLogger(__name__)

#: Element classes: atomic numbers 1..118, 0 is padding.
NUM_ELEMENTS = 119
#: Space-group classes: 1..230, 0 is the "no group" label used for classifier-free guidance.
NUM_SPACEGROUPS = 231


@dataclass
class TokenBatch:
    """Padded tensors of a batch of crystals (see the module docstring for the layout)."""

    spacegroup: torch.Tensor
    cell: torch.Tensor
    cell_mask: torch.Tensor
    wyckoff: torch.Tensor
    elements: torch.Tensor
    coords: torch.Tensor
    coord_mask: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> TokenBatch:
        """Move every tensor to ``device``."""
        return TokenBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def replace(self, **changes: torch.Tensor) -> TokenBatch:
        """A copy with some fields replaced."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return TokenBatch(**values)

    def __len__(self) -> int:
        return int(self.spacegroup.shape[0])

    @property
    def n_orbits(self) -> torch.Tensor:
        """``[B]`` number of real tokens."""
        return self.mask.sum(dim=1)


def collate_tokens(tokens: Sequence[WyckoffTokens], pad_to: int | None = None) -> TokenBatch:
    """Pad a list of crystals into a :class:`TokenBatch`.

    Parameters
    ----------
    tokens
        Crystals; each needs at least one orbit.
    pad_to
        Pad to this many tokens (default: the largest ``K`` of the batch).
    """
    if not tokens:
        raise ValueError("cannot collate an empty list of crystals")
    vocab = wyckoff_vocabulary()
    n = max(t.n_orbits for t in tokens)
    if pad_to is not None:
        if pad_to < n:
            raise ValueError(f"pad_to={pad_to} is smaller than the largest crystal ({n} orbits)")
        n = pad_to
    b = len(tokens)
    wyckoff = np.zeros((b, n), dtype=np.int64)
    elements = np.zeros((b, n), dtype=np.int64)
    coords = np.zeros((b, n, 3), dtype=np.float32)
    mask = np.zeros((b, n), dtype=bool)
    cell = np.zeros((b, 6), dtype=np.float32)
    cell_mask = np.zeros((b, 6), dtype=bool)
    spacegroup = np.zeros(b, dtype=np.int64)
    for i, t in enumerate(tokens):
        k = t.n_orbits
        if k == 0:
            raise ValueError("a crystal without orbits cannot be collated")
        wyckoff[i, :k] = t.wyckoff
        elements[i, :k] = t.elements
        coords[i, :k] = np.mod(t.coords, 1.0)
        mask[i, :k] = True
        cell[i] = t.cell
        cell_mask[i] = CELL_FREE_MASK[crystal_system(int(t.spacegroup))]
        spacegroup[i] = int(t.spacegroup)
    coord_mask = vocab.coord_mask[wyckoff] & mask[..., None]
    return TokenBatch(
        spacegroup=torch.from_numpy(spacegroup),
        cell=torch.from_numpy(cell),
        cell_mask=torch.from_numpy(cell_mask),
        wyckoff=torch.from_numpy(wyckoff),
        elements=torch.from_numpy(elements),
        coords=torch.from_numpy(coords),
        coord_mask=torch.from_numpy(np.ascontiguousarray(coord_mask)),
        mask=torch.from_numpy(mask),
    )


# --------------------------------------------------------------------------- statistics


def cell_features(cell: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``(a, b, c, α, β, γ)`` → ``(log a, log b, log c, α, β, γ)`` (the space we normalize in)."""
    if isinstance(cell, torch.Tensor):
        return torch.cat([torch.log(cell[..., :3].clamp_min(1e-3)), cell[..., 3:]], dim=-1)
    cell = np.asarray(cell, dtype=float)
    return np.concatenate([np.log(np.clip(cell[..., :3], 1e-3, None)), cell[..., 3:]], axis=-1)


@dataclass
class TokenStats:
    """Training-set statistics that travel with a checkpoint.

    Attributes
    ----------
    spacegroup_counts
        ``[231]`` crystals per space group (index 0 unused).
    orbit_counts
        ``{g: [max_orbits + 1]}`` crystals of group ``g`` with ``K`` orbits.
    element_counts
        ``[119]`` orbits per element.
    cell_mean, cell_std
        ``[6]`` mean / std of ``(log a, log b, log c, α, β, γ)`` over *free* entries.
    max_orbits
        Largest ``K`` seen in training.
    n_crystals
        Size of the training set.
    """

    spacegroup_counts: list[int]
    orbit_counts: dict[int, list[int]]
    element_counts: list[int]
    cell_mean: list[float]
    cell_std: list[float]
    max_orbits: int
    n_crystals: int

    @classmethod
    def from_tokens(cls, tokens: Sequence[WyckoffTokens]) -> TokenStats:
        """Compute the statistics of a training set."""
        if not tokens:
            raise ValueError("no training crystals")
        max_orbits = max(t.n_orbits for t in tokens)
        sg_counts = np.zeros(NUM_SPACEGROUPS, dtype=np.int64)
        el_counts = np.zeros(NUM_ELEMENTS, dtype=np.int64)
        orbit_counts: dict[int, np.ndarray] = {}
        feats, free = [], []
        for t in tokens:
            g = int(t.spacegroup)
            sg_counts[g] += 1
            orbit_counts.setdefault(g, np.zeros(max_orbits + 1, dtype=np.int64))[t.n_orbits] += 1
            np.add.at(el_counts, np.asarray(t.elements, dtype=int), 1)
            feats.append(cell_features(np.asarray(t.cell, dtype=float)))
            free.append(t.cell_mask)
        feats_arr, free_arr = np.stack(feats), np.stack(free)
        # defaults for parameters never free in this set: log(5 Å) ± 0.5, 90° ± 15°
        mean = np.array([math.log(5.0)] * 3 + [90.0] * 3)
        std = np.array([0.5] * 3 + [15.0] * 3)
        for j in range(6):
            values = feats_arr[free_arr[:, j], j]
            if len(values) >= 2:
                mean[j] = values.mean()
                std[j] = max(values.std(), 0.05 if j < 3 else 1.0)
        return cls(
            spacegroup_counts=sg_counts.tolist(),
            orbit_counts={g: c.tolist() for g, c in sorted(orbit_counts.items())},
            element_counts=el_counts.tolist(),
            cell_mean=mean.tolist(),
            cell_std=std.tolist(),
            max_orbits=int(max_orbits),
            n_crystals=len(tokens),
        )

    # ---- serialization (plain JSON types only, so checkpoints load with weights_only)
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "spacegroup_counts": list(self.spacegroup_counts),
            "orbit_counts": {str(g): list(c) for g, c in self.orbit_counts.items()},
            "element_counts": list(self.element_counts),
            "cell_mean": list(self.cell_mean),
            "cell_std": list(self.cell_std),
            "max_orbits": self.max_orbits,
            "n_crystals": self.n_crystals,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenStats:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        values["orbit_counts"] = {int(g): list(c) for g, c in data["orbit_counts"].items()}
        return cls(**values)

    # ---- distributions
    @property
    def spacegroup_probs(self) -> np.ndarray:
        """``[231]`` p(g) of the training set."""
        counts = np.asarray(self.spacegroup_counts, dtype=float)
        return counts / counts.sum()

    def orbit_probs(self, spacegroup: int) -> np.ndarray:
        """``[max_orbits + 1]`` p(K | g); groups unseen in training fall back to p(K)."""
        counts = self.orbit_counts.get(int(spacegroup))
        if counts is None or sum(counts) == 0:
            counts = np.sum([np.asarray(c) for c in self.orbit_counts.values()], axis=0)
        arr = np.asarray(counts, dtype=float)
        return arr / arr.sum()

    @property
    def element_mask(self) -> np.ndarray:
        """``[119]`` bool, elements that occur in the training set (decoding is limited to them)."""
        return np.asarray(self.element_counts) > 0

    def sample_spacegroups(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` space groups from p(g)."""
        return rng.choice(NUM_SPACEGROUPS, size=n, p=self.spacegroup_probs)

    def sample_orbit_counts(self, spacegroups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw ``K ~ p(K | g)`` for each group."""
        out = np.zeros(len(spacegroups), dtype=np.int64)
        for g in np.unique(spacegroups):
            idx = np.flatnonzero(spacegroups == g)
            probs = self.orbit_probs(int(g))
            out[idx] = rng.choice(len(probs), size=len(idx), p=probs)
        return out

    # ---- cell normalization (torch)
    def normalize_cell(self, cell: torch.Tensor) -> torch.Tensor:
        """``[B, 6]`` physical cell → normalized features."""
        mean = torch.as_tensor(self.cell_mean, dtype=cell.dtype, device=cell.device)
        std = torch.as_tensor(self.cell_std, dtype=cell.dtype, device=cell.device)
        return (torch.as_tensor(cell_features(cell)) - mean) / std

    def denormalize_cell(self, feats: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize_cell`."""
        mean = torch.as_tensor(self.cell_mean, dtype=feats.dtype, device=feats.device)
        std = torch.as_tensor(self.cell_std, dtype=feats.dtype, device=feats.device)
        raw = feats * std + mean
        return torch.cat([torch.exp(raw[..., :3]), raw[..., 3:]], dim=-1)


# --------------------------------------------------------------------------- datasets


def _tokens_from_cif(cif: str) -> str | None:
    from pymatgen.core import Structure

    try:
        structure = Structure.from_str(cif, fmt="cif")
        return structure_to_tokens(structure).to_json()
    except Exception:  # a structure pyxtal cannot analyse is skipped (and counted)
        return None


def _read_csv_tokens(path: Path, n_workers: int, cache_dir: Path | None) -> list[WyckoffTokens]:
    frame = pd.read_csv(path)
    if "cif" not in frame.columns:
        raise ValueError(f"{path}: a CSV dataset needs a 'cif' column")
    cache = None
    if cache_dir is not None:
        import hashlib

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        cache = Path(cache_dir) / f"symadit_tokens_{path.name.split('.')[0]}_{digest}.parquet"
        if cache.exists():
            cached = pd.read_parquet(cache)
            return [WyckoffTokens.from_json(s) for s in cached["wyckoff"] if isinstance(s, str)]
    cifs = list(frame["cif"])
    if n_workers > 1 and len(cifs) > 64:
        with ProcessPoolExecutor(max_workers=n_workers) as pool:
            jsons = list(pool.map(_tokens_from_cif, cifs, chunksize=32))
    else:
        jsons = [_tokens_from_cif(c) for c in cifs]
    failed = sum(j is None for j in jsons)
    if failed:
        log.warning(
            "%s: %d of %d structures could not be tokenized (skipped)", path, failed, len(cifs)
        )
    if cache is not None:
        from tasks.core.atomic import atomic_write

        out = pd.DataFrame({"wyckoff": [j or "" for j in jsons]})
        if "material_id" in frame.columns:
            out.insert(0, "material_id", frame["material_id"].astype(str))
        atomic_write(cache, lambda tmp: out.to_parquet(tmp, index=False))
    return [WyckoffTokens.from_json(j) for j in jsons if j]


def load_tokens(
    path: str | Path, n_workers: int = 1, cache_dir: str | Path | None = None
) -> list[WyckoffTokens]:
    """Read a dataset as Wyckoff tokens.

    Parameters
    ----------
    path
        A processed dataset (parquet of :class:`tasks.core.records.CrystalRecord` rows, whose
        ``wyckoff`` column holds :meth:`WyckoffTokens.to_json`; only ``ok`` rows are used;
        a directory means its ``dataset.parquet``) or
        a CSV (optionally gzipped) with a ``cif`` column, tokenized here with pyxtal.
    n_workers
        Processes for tokenizing a CSV.
    cache_dir
        Where tokenized CSVs are cached (keyed by the file's sha256); None disables it.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "dataset.parquet"
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} not found")
    if path.suffix == ".parquet":
        from tasks.core.records import read_records

        frame = read_records(path)
        if "wyckoff" not in frame.columns:
            raise ValueError(f"{path}: processed dataset has no 'wyckoff' column")
        tokens = [WyckoffTokens.from_json(s) for s in frame["wyckoff"] if isinstance(s, str) and s]
    else:
        tokens = _read_csv_tokens(path, n_workers, Path(cache_dir) if cache_dir else None)
    tokens = [t for t in tokens if t.n_orbits > 0]
    if not tokens:
        raise ValueError(f"{path}: no usable crystals")
    return tokens
