"""Batched, differentiable-where-it-matters symmetrizers for predicted coords and cells.

All functions take torch tensors and gather per-token tables from the Wyckoff vocabulary,
so a whole batch is symmetrized in a few tensor ops. Tables are cached per device.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from representation.wyckoff_vocab import (
    CELL_FREE_MASK,
    CRYSTAL_SYSTEMS,
    crystal_system,
    wyckoff_vocabulary,
)

# Per crystal system, cell' = T @ cell + o ties the constrained parameters to the free ones.
_RIGHT = 90.0


def _cell_tie(system: str) -> tuple[np.ndarray, np.ndarray]:
    tie = np.zeros((6, 6))
    offset = np.zeros(6)
    a, b, c, alpha, beta, gamma = range(6)
    lengths_from = {
        "cubic": (a, a, a),
        "tetragonal": (a, a, c),
        "trigonal": (a, a, c),
        "hexagonal": (a, a, c),
    }.get(system, (a, b, c))
    for row, col in zip((a, b, c), lengths_from, strict=True):
        tie[row, col] = 1.0
    for angle in (alpha, beta, gamma):
        if CELL_FREE_MASK[system][angle]:
            tie[angle, angle] = 1.0
        else:
            offset[angle] = (
                120.0 if (system in ("trigonal", "hexagonal") and angle == gamma) else _RIGHT
            )
    return tie, offset


@lru_cache(maxsize=8)
def _tables(device: str) -> dict[str, torch.Tensor]:
    vocab = wyckoff_vocabulary()
    ties = [_cell_tie(s) for s in CRYSTAL_SYSTEMS]
    system_of_group = [0] + [CRYSTAL_SYSTEMS.index(crystal_system(g)) for g in range(1, 231)]
    tables = {
        "proj_matrix": torch.as_tensor(vocab.proj_matrix, dtype=torch.float64),
        "proj_offset": torch.as_tensor(vocab.proj_offset, dtype=torch.float64),
        "coord_mask": torch.as_tensor(vocab.coord_mask),
        "group_mask": torch.as_tensor(vocab.group_mask),
        "cell_tie": torch.as_tensor(np.stack([t for t, _ in ties]), dtype=torch.float64),
        "cell_offset": torch.as_tensor(np.stack([o for _, o in ties]), dtype=torch.float64),
        "cell_mask": torch.as_tensor(np.array([CELL_FREE_MASK[s] for s in CRYSTAL_SYSTEMS], bool)),
        "system_of_group": torch.as_tensor(system_of_group),
    }
    return {k: v.to(device) for k, v in tables.items()}


def symmetrize_coords(coords: torch.Tensor, wyckoff: torch.Tensor) -> torch.Tensor:
    """Project fractional coords onto their Wyckoff positions' free subspaces (mod 1).

    Parameters
    ----------
    coords
        ``(..., 3)`` predicted fractional coords of orbit representatives.
    wyckoff
        ``(...)`` global Wyckoff indices, same leading shape.

    Returns
    -------
    torch.Tensor
        Coords in ``[0, 1)`` that lie exactly on the positions (idempotent: applying it
        twice changes nothing). The free coordinates (see :func:`coord_free_mask`) pass
        through unchanged; the others are derived from them.
    """
    tables = _tables(str(coords.device))
    matrix = tables["proj_matrix"][wyckoff].to(coords.dtype)
    offset = tables["proj_offset"][wyckoff].to(coords.dtype)
    projected = torch.einsum("...ij,...j->...i", matrix, coords) + offset
    wrapped = torch.remainder(projected, 1.0)
    # remainder(-1e-17, 1) rounds to exactly 1.0: fold it back to 0
    return torch.where(wrapped >= 1.0, wrapped - 1.0, wrapped)


def coord_free_mask(wyckoff: torch.Tensor) -> torch.Tensor:
    """``(..., 3)`` bool: which coordinates of each orbit are free parameters."""
    return _tables(str(wyckoff.device))["coord_mask"][wyckoff]


def cell_free_mask(spacegroup: torch.Tensor) -> torch.Tensor:
    """``(B, 6)`` bool: free conventional-cell parameters implied by the crystal system."""
    tables = _tables(str(spacegroup.device))
    return tables["cell_mask"][tables["system_of_group"][spacegroup]]


def tie_cell(cell: torch.Tensor, spacegroup: torch.Tensor) -> torch.Tensor:
    """Tie ``(a, b, c, alpha, beta, gamma)`` (Å, degrees) to the crystal system.

    Cubic keeps only ``a``; tetragonal/trigonal/hexagonal keep ``a, c`` (``gamma = 120°`` for
    the hexagonal axes); orthorhombic ``a, b, c``; monoclinic adds ``beta``; triclinic keeps
    all six. Right angles are set to 90°. Idempotent.
    """
    tables = _tables(str(cell.device))
    system = tables["system_of_group"][spacegroup]
    tie = tables["cell_tie"][system].to(cell.dtype)
    offset = tables["cell_offset"][system].to(cell.dtype)
    return torch.einsum("bij,bj->bi", tie, cell) + offset


def wyckoff_logit_mask(spacegroup: torch.Tensor) -> torch.Tensor:
    """``(B, V)`` bool: the Wyckoff positions that belong to each crystal's space group."""
    return _tables(str(spacegroup.device))["group_mask"][spacegroup]
