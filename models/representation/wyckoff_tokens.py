"""SymADiT's crystal representation: space group, conventional cell and one token per orbit.

``structure_to_tokens`` analyses a structure with pyxtal (``from_seed``) and keeps, for each
symmetry orbit, its global Wyckoff index, element and representative fractional coords;
``tokens_to_structure`` is the inverse (pyxtal ``build`` → pymatgen).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Element, Structure

from models.representation.wyckoff_vocab import CELL_FREE_MASK, crystal_system, wyckoff_vocabulary


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
