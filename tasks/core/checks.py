"""The structural sanity rule, written once: every stage that checks a crystal calls this.

A crystal passes when

- it has atoms and every site is fully occupied by one element;
- its lattice and coordinates are finite and not absurd (lattice vectors at most
  :data:`MAX_LATTICE_LENGTH` Å, fractional coordinates within ±:data:`MAX_ABS_FRACTIONAL`):
  such inputs are corrupted, and a neighbour search over them can exhaust memory;
- its cell volume is at least ``min_volume`` (0.1 Å³);
- no two atoms are closer than ``min_distance`` (0.5 Å), **periodic images included**,
  an atom's own images too (a lattice vector shorter than 0.5 Å is a clash).

This is the structural validity of CDVAE / ADiT (``docs/evaluation.md``, step 2), plus the
own-image and corruption checks. Ingestion, evaluation, the MLIP guards, the DFT input check
and both models' validators use it. Each check returns the reason as text (``""`` when the
crystal passes) and never raises.
"""

from __future__ import annotations

import math

import numpy as np
from pymatgen.core import Structure

#: CDVAE/ADiT thresholds: the shortest allowed interatomic distance (Å) and cell volume (Å³).
MIN_DISTANCE = 0.5
MIN_VOLUME = 0.1
#: Longest lattice vector (Å) we accept; MP-20 and MPTS-52 stay below 60 Å.
MAX_LATTICE_LENGTH = 1000.0
#: Largest |fractional coordinate|; beyond it an input is corrupted, not merely unwrapped.
MAX_ABS_FRACTIONAL = 1000.0


def geometry_problem(lattice: np.ndarray, frac_coords: np.ndarray) -> str:
    """Why a cell and its fractional coordinates cannot be a crystal (``""`` if they can).

    Cheap (no neighbour search): run it before anything that scales with the cell.
    """
    lattice = np.asarray(lattice, dtype=float)
    frac = np.asarray(frac_coords, dtype=float).reshape(-1, 3)
    if len(frac) == 0:
        return "no atoms"
    if lattice.shape != (3, 3) or not np.all(np.isfinite(lattice)):
        return "non-finite lattice"
    if not np.all(np.isfinite(frac)):
        return "non-finite coordinates"
    longest = float(np.linalg.norm(lattice, axis=1).max())
    if longest > MAX_LATTICE_LENGTH:
        return f"lattice vector of {longest:.4g} Å exceeds {MAX_LATTICE_LENGTH:g} Å"
    largest = float(np.abs(frac).max())
    if largest > MAX_ABS_FRACTIONAL:
        limit = f"±{MAX_ABS_FRACTIONAL:g}"
        return f"fractional coordinate {largest:.4g} is far outside the cell (limit {limit})"
    return ""


def _image_shifts(lattice: np.ndarray, cutoff: float) -> np.ndarray | None:
    """Integer lattice shifts that can bring two wrapped atoms within ``cutoff``.

    With fractional differences in (-1, 1), a Cartesian vector's length is at least
    ``|f_i| * d_i`` (``d_i`` the spacing of lattice planes ``i``), so shifts up to
    ``ceil(cutoff / d_i)`` per axis suffice. ``None`` when the cell is so thin that more
    than :data:`_MAX_SHIFTS` shifts would be needed.
    """
    volume = abs(float(np.linalg.det(lattice)))
    if volume <= 0:
        return None
    cross = np.cross(lattice[[1, 2, 0]], lattice[[2, 0, 1]])
    spacing = volume / np.linalg.norm(cross, axis=1)
    reach = np.ceil(cutoff / spacing)
    if not np.all(np.isfinite(reach)) or float(np.prod(2 * reach + 1)) > _MAX_SHIFTS:
        return None
    reach = reach.astype(int)
    ranges = [np.arange(-m, m + 1) for m in reach]
    return np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, 3)


#: Most lattice shifts a distance check enumerates (27 for any cell thicker than the cutoff).
_MAX_SHIFTS = 20_000
#: Pair distances computed per block (bounds the memory of a check to a few tens of MB).
_BLOCK = 1_000_000


def neighbor_pairs(
    lattice: np.ndarray, frac_coords: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of atoms closer than ``cutoff`` Å, periodic and own images included.

    Exact for any cell (the lattice shifts are bounded by the plane spacings, see
    :func:`_image_shifts`), and its memory does not grow with the cell's size: it loops over
    shifts and blocks of atoms instead of binning space, as neighbour lists do.

    Parameters
    ----------
    lattice
        3×3 lattice matrix (rows are the lattice vectors, Å).
    frac_coords
        Fractional coordinates, one row per atom (wrapped here).
    cutoff
        Search radius (Å).

    Returns
    -------
    i, j, distance
        Arrays over the pairs (each ordered pair and each image once); ``i == j`` is an atom
        and one of its own periodic images.

    Raises
    ------
    ValueError
        The cell is degenerate (zero volume, or thinner than the cutoff by a factor of
        thousands).
    """
    lattice = np.asarray(lattice, dtype=float)
    shifts = _image_shifts(lattice, cutoff)
    if shifts is None:
        raise ValueError("degenerate cell: lattice planes far closer than the distance cutoff")
    frac = np.mod(np.asarray(frac_coords, dtype=float).reshape(-1, 3), 1.0)
    cart = frac @ lattice
    translations = shifts @ lattice
    zero = int(np.flatnonzero(~shifts.any(axis=1))[0])
    n = len(cart)
    rows = max(1, _BLOCK // max(1, n))
    found_i, found_j, found_d = [], [], []
    for start in range(0, n, rows):
        block = cart[start : start + rows]
        diff = cart[None, :, :] - block[:, None, :]  # (rows, n, 3)
        for s, t in enumerate(translations):
            d2 = ((diff + t) ** 2).sum(axis=-1)
            if s == zero:
                idx = np.arange(len(block))
                d2[idx, start + idx] = np.inf
            i, j = np.nonzero(d2 < cutoff * cutoff)
            found_i.append(i + start)
            found_j.append(j)
            found_d.append(np.sqrt(d2[i, j]))
    if not found_i:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def closest_pair(
    lattice: np.ndarray, frac_coords: np.ndarray, cutoff: float
) -> tuple[int, int, float] | None:
    """The closest pair within ``cutoff`` Å (see :func:`neighbor_pairs`), or ``None``."""
    i, j, d = neighbor_pairs(lattice, frac_coords, cutoff)
    if not len(d):
        return None
    k = int(np.argmin(d))
    return int(i[k]), int(j[k]), float(d[k])


def distance_problem(
    lattice: np.ndarray, frac_coords: np.ndarray, symbols: list[str], min_distance: float
) -> str:
    """Why atoms clash (``""`` when every distance is at least ``min_distance`` Å)."""
    try:
        pair = closest_pair(lattice, frac_coords, min_distance)
    except ValueError as err:
        return str(err)
    if pair is None:
        return ""
    i, j, d = pair
    what = (
        f"{symbols[i]}{i} and its own periodic image"
        if i == j
        else (f"{symbols[i]}{i}-{symbols[j]}{j}")
    )
    return f"overlapping atoms: interatomic distance {d:.3f} Å < {min_distance} Å ({what})"


def structure_problem(
    structure: Structure,
    min_distance: float = MIN_DISTANCE,
    min_volume: float = MIN_VOLUME,
) -> str:
    """Why ``structure`` fails the structural sanity rule (``""`` when it passes).

    Parameters
    ----------
    structure
        The crystal.
    min_distance
        Shortest allowed interatomic distance (Å), periodic images included.
    min_volume
        Smallest allowed cell volume (Å³).

    Returns
    -------
    str
        The first failing criterion, in the order of the module docstring.
    """
    try:
        if len(structure) == 0:
            return "no atoms"
        if not structure.is_ordered:
            return "partial occupancy (disordered structure)"
        bad = geometry_problem(structure.lattice.matrix, structure.frac_coords)
        if bad:
            return bad
        volume = float(structure.volume)
        if not math.isfinite(volume) or volume < min_volume:
            return f"cell volume {volume:.4g} Å^3 < {min_volume} Å^3"
        symbols = [site.specie.symbol for site in structure]
        return distance_problem(
            structure.lattice.matrix, structure.frac_coords, symbols, min_distance
        )
    except Exception as err:  # a geometry failure is a verdict, not a crash
        return f"structure check failed: {type(err).__name__}: {err}"[:300]
