"""MCFlow's atom order and its symmetry-respecting augmentations.

Atoms of the primitive cell are grouped into orbits (same element and Wyckoff position, from
spglib's ``equivalent_atoms``); orbits are sorted by (Pauling electronegativity, Wyckoff
letter) and atoms of an orbit stay contiguous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Element, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

#: Sort key for elements without a Pauling electronegativity (noble gases): after all others.
_NO_ELECTRONEGATIVITY = 10.0


def electronegativity(symbol: str) -> float:
    """Pauling electronegativity, with elements that lack one placed last."""
    value = Element(symbol).X
    return _NO_ELECTRONEGATIVITY if value is None or math.isnan(value) else float(value)


@dataclass
class AtomOrder:
    """A structure reordered for MCFlow, with its symmetry analysis.

    Attributes
    ----------
    structure
        The input structure with sites permuted into MCFlow order.
    orbit_index
        ``(N,)`` orbit id per atom, ``0..K-1``, non-decreasing.
    wyckoff_letters
        Wyckoff letter per atom (spglib, conventional setting of the detected group).
    spacegroup
        Detected international number.
    """

    structure: Structure
    orbit_index: np.ndarray
    wyckoff_letters: list[str]
    spacegroup: int

    @property
    def n_orbits(self) -> int:
        """Number of symmetry orbits."""
        return int(self.orbit_index.max()) + 1 if len(self.orbit_index) else 0

    @property
    def orbit_keys(self) -> list[tuple[str, str]]:
        """(element, Wyckoff letter) of each orbit, in order."""
        first = np.searchsorted(self.orbit_index, np.arange(self.n_orbits))
        return [(self.structure[i].species_string, self.wyckoff_letters[i]) for i in first]


def mcflow_order(
    structure: Structure, symprec: float = 0.1, angle_tolerance: float = 5.0
) -> AtomOrder:
    """Group the atoms of ``structure`` into orbits and sort them for MCFlow.

    Orbits are sorted by (electronegativity, Wyckoff letter, element, first atom index) and
    atoms inside an orbit keep their input order.

    Raises
    ------
    ValueError
        If spglib finds no symmetry dataset at this tolerance.
    """
    dataset = SpacegroupAnalyzer(
        structure, symprec=symprec, angle_tolerance=angle_tolerance
    ).get_symmetry_dataset()
    if dataset is None:
        raise ValueError(f"spglib found no symmetry dataset at symprec={symprec}")
    equivalent = np.asarray(dataset.equivalent_atoms)
    letters = list(dataset.wyckoffs)
    representatives = sorted(
        set(equivalent.tolist()),
        key=lambda i: (
            electronegativity(structure[i].species_string),
            letters[i],
            structure[i].species_string,
            i,
        ),
    )
    order, orbit_index = [], []
    for k, rep in enumerate(representatives):
        members = np.flatnonzero(equivalent == rep)
        order.extend(members.tolist())
        orbit_index.extend([k] * len(members))
    reordered = Structure.from_sites([structure[i] for i in order])
    return AtomOrder(
        structure=reordered,
        orbit_index=np.asarray(orbit_index, dtype=int),
        wyckoff_letters=[letters[i] for i in order],
        spacegroup=int(dataset.number),
    )


def hierarchical_permutation(
    orbit_index: np.ndarray, orbit_keys: list[tuple[str, str]], rng: np.random.Generator
) -> np.ndarray:
    """A random atom permutation that respects the MCFlow order's structure.

    Orbits that share (element, Wyckoff letter) may swap places (they are interchangeable in
    the sort), and atoms are shuffled inside each orbit; orbits stay contiguous and the
    sorted order of distinct keys is kept.

    Parameters
    ----------
    orbit_index
        ``(N,)`` non-decreasing orbit ids.
    orbit_keys
        ``(element, letter)`` per orbit.
    rng
        Source of randomness.

    Returns
    -------
    np.ndarray
        ``perm`` such that ``atoms[perm]`` is the augmented order.
    """
    orbit_index = np.asarray(orbit_index)
    members = [np.flatnonzero(orbit_index == k) for k in range(len(orbit_keys))]
    slots: dict[tuple[str, str], list[int]] = {}
    for k, key in enumerate(orbit_keys):
        slots.setdefault(key, []).append(k)
    new_orbit_order = list(range(len(orbit_keys)))
    for same in slots.values():
        if len(same) > 1:
            shuffled = rng.permutation(same)
            for slot, orbit in zip(same, shuffled, strict=True):
                new_orbit_order[slot] = int(orbit)
    perm = [rng.permutation(members[k]) for k in new_orbit_order]
    return np.concatenate(perm) if perm else np.zeros(0, dtype=int)


def random_translation(frac_coords: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift all fractional coords by one uniform random vector, wrapped into ``[0, 1)``."""
    return np.mod(np.asarray(frac_coords) + rng.random(3), 1.0)
