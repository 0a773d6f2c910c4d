"""SymADiT's crystal representation: space group, conventional cell and one token per orbit.

``structure_to_tokens`` analyses a structure with pyxtal (``from_seed``) and keeps, for each
symmetry orbit, its global Wyckoff index, element and representative fractional coords;
``tokens_to_structure`` is the inverse (pyxtal ``build`` → pymatgen). ``expand_batch`` gives
the same structures as ``tokens_to_structure`` for a whole batch at once, with the
vocabulary's orbit operations in numpy (no pyxtal objects per sample): what sampling uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from pymatgen.core import Element, Lattice, Structure

from representation.wyckoff_vocab import CELL_FREE_MASK, crystal_system, wyckoff_vocabulary


@dataclass
class WyckoffTokens:
    """A crystal as Wyckoff-orbit tokens.

    Attributes
    ----------
    spacegroup
        International number (pyxtal's standard setting).
    cell
        Conventional cell ``(a, b, c, alpha, beta, gamma)``, Å and degrees.
    wyckoff
        ``(K,)`` global Wyckoff indices (:func:`wyckoff_vocabulary`).
    elements
        ``(K,)`` atomic numbers.
    coords
        ``(K, 3)`` fractional coords of each orbit's representative, on the position's
        representative operation (so the symmetrizer leaves them unchanged).
    """

    spacegroup: int
    cell: np.ndarray
    wyckoff: np.ndarray
    elements: np.ndarray
    coords: np.ndarray

    @property
    def n_orbits(self) -> int:
        """Number of orbits (tokens)."""
        return len(self.wyckoff)

    @property
    def coord_mask(self) -> np.ndarray:
        """``(K, 3)`` bool: the free coordinates of each orbit."""
        return wyckoff_vocabulary().coord_mask[self.wyckoff]

    @property
    def cell_mask(self) -> np.ndarray:
        """``(6,)`` bool: the free cell parameters of the crystal system."""
        return np.asarray(CELL_FREE_MASK[crystal_system(self.spacegroup)], dtype=bool)

    @property
    def labels(self) -> list[str]:
        """Wyckoff labels such as ``225_4a``, one per orbit."""
        vocab = wyckoff_vocabulary()
        return [vocab.labels[i] for i in self.wyckoff]

    def to_json(self) -> str:
        """Compact JSON (lists of numbers) for the dataset's ``wyckoff`` column."""
        return json.dumps(
            {
                "spacegroup": int(self.spacegroup),
                "cell": [round(float(v), 8) for v in self.cell],
                "wyckoff": [int(i) for i in self.wyckoff],
                "elements": [int(z) for z in self.elements],
                "coords": np.round(self.coords, 8).tolist(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> WyckoffTokens:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        return cls(
            spacegroup=int(data["spacegroup"]),
            cell=np.asarray(data["cell"], dtype=float),
            wyckoff=np.asarray(data["wyckoff"], dtype=int),
            elements=np.asarray(data["elements"], dtype=int),
            coords=np.asarray(data["coords"], dtype=float).reshape(-1, 3),
        )


def structure_to_tokens(structure: Structure, tol: float = 0.1) -> WyckoffTokens:
    """Wyckoff tokens of a structure (pyxtal ``from_seed`` at tolerance ``tol`` Å).

    Raises
    ------
    ValueError
        If pyxtal cannot describe the structure (the message says why).
    """
    from pyxtal import pyxtal

    crystal = pyxtal()
    try:
        crystal.from_seed(structure, tol=tol)
    except Exception as err:  # pyxtal raises many exception types
        raise ValueError(f"pyxtal could not analyse the structure: {err}") from err
    vocab = wyckoff_vocabulary()
    group = crystal.group.number
    wyckoff, elements, coords = [], [], []
    for site in crystal.atom_sites:
        index = vocab.index(group, site.wp.letter)
        wyckoff.append(index)
        elements.append(Element(site.specie).Z)
        coords.append(np.mod(site.position, 1.0))
    return WyckoffTokens(
        spacegroup=group,
        cell=np.asarray(crystal.lattice.get_para(degree=True), dtype=float),
        wyckoff=np.asarray(wyckoff, dtype=int),
        elements=np.asarray(elements, dtype=int),
        coords=np.asarray(coords, dtype=float).reshape(-1, 3),
    )


def tokens_to_structure(tokens: WyckoffTokens) -> Structure:
    """Expand tokens to the full crystal (conventional cell) through pyxtal.

    Raises
    ------
    ValueError
        If the tokens do not describe a valid crystal (wrong group for a position, a
        special position used twice, a degenerate cell...).
    """
    from pyxtal import pyxtal
    from pyxtal.lattice import Lattice

    vocab = wyckoff_vocabulary()
    group = int(tokens.spacegroup)
    species: list[str] = []
    counts: list[int] = []
    sites: list[list[dict[str, list[float]]]] = []
    for index, z, xyz in zip(tokens.wyckoff, tokens.elements, tokens.coords, strict=True):
        if vocab.spacegroup[index] != group:
            raise ValueError(f"Wyckoff position {vocab.labels[index]} is not in group {group}")
        symbol = Element.from_Z(int(z)).symbol
        label = f"{vocab.multiplicity[index]}{vocab.letter[index]}"
        if symbol not in species:
            species.append(symbol)
            counts.append(0)
            sites.append([])
        k = species.index(symbol)
        counts[k] += int(vocab.multiplicity[index])
        sites[k].append({label: [float(v) for v in xyz]})
    a, b, c, alpha, beta, gamma = (float(v) for v in tokens.cell)
    try:
        lattice = Lattice.from_para(a, b, c, alpha, beta, gamma, ltype=crystal_system(group))
        crystal = pyxtal()
        crystal.build(group, species, counts, lattice, sites)
        return crystal.to_pymatgen()
    except Exception as err:
        raise ValueError(f"cannot expand tokens of group {group}: {err}") from err


@cache
def _element(z: int) -> Element:
    return Element.from_Z(z)


def upper_cell_matrices(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell matrices of ``(B, 6)`` parameters (Å, degrees) in pyxtal's upper-triangular form.

    ``c`` lies along z and ``b`` in the yz plane (pyxtal's ``para2matrix(format="upper")``,
    the orientation :func:`tokens_to_structure` produces). Returns the ``(B, 3, 3)`` matrices
    and a ``(B,)`` bool of the cells that exist (finite, positive lengths, angles that close).
    """
    cells = np.asarray(cells, dtype=float).reshape(-1, 6)
    a, b, c = cells[:, 0], cells[:, 1], cells[:, 2]
    alpha, beta, gamma = np.radians(cells[:, 3]), np.radians(cells[:, 4]), np.radians(cells[:, 5])
    with np.errstate(invalid="ignore", divide="ignore"):
        a3 = a * np.cos(beta)
        a2 = a * (np.cos(gamma) - np.cos(beta) * np.cos(alpha)) / np.sin(alpha)
        square = a**2 - a3**2 - a2**2
        matrices = np.zeros((len(cells), 3, 3))
        matrices[:, 0, 0] = np.sqrt(np.where(square > 0, square, np.nan))
        matrices[:, 0, 1], matrices[:, 0, 2] = a2, a3
        matrices[:, 1, 1], matrices[:, 1, 2] = b * np.sin(alpha), b * np.cos(alpha)
        matrices[:, 2, 2] = c
    ok = np.isfinite(matrices).all(axis=(1, 2)) & (square > 0) & (cells[:, :3] > 0).all(axis=1)
    return matrices, ok


def expand_batch(batch: Sequence[WyckoffTokens]) -> list[Structure | str]:
    """Expand many token sets to structures at once, as :func:`tokens_to_structure` does.

    Every orbit's representative (wrapped into ``[0, 1)``) goes through its position's
    operations in one vectorised step; atoms come out in pyxtal's order (sorted by element
    symbol, then orbit, then operation) in its upper-triangular cell, so the result equals
    pyxtal's ``build`` → ``to_pymatgen`` site by site.

    Returns
    -------
    list
        Per token set, the :class:`~pymatgen.core.Structure` or, where none exists, the
        reason (a position of another group, coordinates off their position, a cell whose
        angles do not close).
    """
    vocab = wyckoff_vocabulary()
    if not batch:
        return []
    counts = np.array([t.n_orbits for t in batch])
    wyckoff = np.concatenate([np.asarray(t.wyckoff, dtype=int) for t in batch])
    coords = np.concatenate([np.asarray(t.coords, dtype=float).reshape(-1, 3) for t in batch])
    coords = np.mod(coords, 1.0)
    owner = np.repeat(np.arange(len(batch)), counts)
    groups = np.array([int(t.spacegroup) for t in batch])
    foreign = vocab.spacegroup[wyckoff] != groups[owner]
    projected = np.einsum("oij,oj->oi", vocab.proj_matrix[wyckoff], coords)
    off = np.abs(projected + vocab.proj_offset[wyckoff] - coords)
    off = np.minimum(off, 1.0 - off).max(axis=1) > 1e-4
    multiplicity = vocab.multiplicity[wyckoff]
    orbit_of_atom = np.repeat(np.arange(len(wyckoff)), multiplicity)
    first_atom = np.cumsum(multiplicity) - multiplicity
    operation = vocab.orbit_start[wyckoff][orbit_of_atom] + (
        np.arange(len(orbit_of_atom)) - first_atom[orbit_of_atom]
    )
    atoms = (
        np.einsum("aij,aj->ai", vocab.orbit_rotation[operation], coords[orbit_of_atom])
        + vocab.orbit_translation[operation]
    )
    matrices, cell_ok = upper_cell_matrices(np.stack([t.cell for t in batch]))
    orbit_end = np.cumsum(counts)
    results: list[Structure | str] = []
    for i, tokens in enumerate(batch):
        orbits = np.arange(orbit_end[i] - counts[i], orbit_end[i])
        if foreign[orbits].any():
            index = wyckoff[orbits][foreign[orbits]][0]
            results.append(f"Wyckoff position {vocab.labels[index]} is not in group {groups[i]}")
            continue
        if off[orbits].any():
            index = wyckoff[orbits][off[orbits]][0]
            results.append(f"coordinates off their Wyckoff position {vocab.labels[index]}")
            continue
        if not cell_ok[i]:
            results.append(f"cell {np.round(tokens.cell, 4).tolist()} does not exist")
            continue
        elements = [_element(int(z)) for z in tokens.elements]
        order = sorted(range(len(orbits)), key=lambda k: elements[k].symbol)
        species, frac = [], []
        for k in order:
            start = first_atom[orbits[k]]
            species += [elements[k]] * int(multiplicity[orbits[k]])
            frac.append(atoms[start : start + multiplicity[orbits[k]]])
        results.append(Structure(Lattice(matrices[i]), species, np.concatenate(frac)))
    return results
