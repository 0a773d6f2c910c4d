import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from representation.atom_order import (
    electronegativity,
    hierarchical_permutation,
    mcflow_order,
    random_translation,
)


def _structures(path, n: int = 25) -> list[Structure]:
    frame = pd.read_csv(path, nrows=n)
    return [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]


def test_order_groups_orbits_sorted_by_electronegativity(mp20_test_sample) -> None:
    for structure in _structures(mp20_test_sample):
        order = mcflow_order(structure)
        idx = order.orbit_index
        assert np.all(np.diff(idx) >= 0) and idx[0] == 0  # contiguous, in order
        keys = order.orbit_keys
        sort_keys = [(electronegativity(el), letter) for el, letter in keys]
        assert sort_keys == sorted(sort_keys)
        # the reordered structure is the same crystal
        assert StructureMatcher().fit(structure, order.structure)
        assert sorted(map(str, structure.species)) == sorted(map(str, order.structure.species))


def test_hierarchical_permutation_keeps_orbit_structure(mp20_test_sample) -> None:
    rng = np.random.default_rng(0)
    changed = 0
    for structure in _structures(mp20_test_sample):
        order = mcflow_order(structure)
        perm = hierarchical_permutation(order.orbit_index, order.orbit_keys, rng)
        assert sorted(perm.tolist()) == list(range(len(structure)))
        species = [order.structure[i].species_string for i in perm]
        letters = [order.wyckoff_letters[i] for i in perm]
        assert species == [s.species_string for s in order.structure]  # same key sequence
        assert letters == order.wyckoff_letters
        # atoms of one orbit stay contiguous
        new_orbits = order.orbit_index[perm]
        blocks = [k for i, k in enumerate(new_orbits) if i == 0 or k != new_orbits[i - 1]]
        assert len(blocks) == len(set(blocks))
        changed += int(not np.array_equal(perm, np.arange(len(perm))))
    assert changed > 0


def test_random_translation_wraps() -> None:
    rng = np.random.default_rng(1)
    frac = np.array([[0.0, 0.5, 0.99], [0.2, 0.3, 0.4]])
    moved = random_translation(frac, rng)
    assert np.all((moved >= 0) & (moved < 1))
    shift = (moved - frac) % 1.0
    assert np.allclose(shift[0], shift[1])
