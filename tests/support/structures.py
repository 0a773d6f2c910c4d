"""Crystal builders shared by the tests (real pymatgen structures, no mocks)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from tasks.core.paths import SAMPLES_DIR
from tasks.core.structure_io import read_structures


@lru_cache(maxsize=4)
def sample_structures(name: str, n: int) -> tuple[tuple[str, Structure], ...]:
    """The first ``n`` readable structures of a bundled sample (cached; copy before editing)."""
    items = read_structures(Path(SAMPLES_DIR) / name, limit=n)
    return tuple((i, s) for i, s, _ in items if s is not None)


def rocksalt(
    a: float = 5.64, cation: str = "Na", anion: str = "Cl", primitive: bool = False
) -> Structure:
    """Rock-salt cell: conventional (8 atoms), or primitive (2 atoms)."""
    cell = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    return cell.get_primitive_structure() if primitive else cell


def diamond_si() -> Structure:
    """Primitive diamond Si (2 atoms)."""
    return Structure.from_spacegroup(
        "Fd-3m", Lattice.cubic(5.47), ["Si"], [[0, 0, 0]]
    ).get_primitive_structure()


def duplicate_variants(structure: Structure, rng: np.random.Generator) -> list[Structure]:
    """Copies the matcher must match: supercell, permuted sites, translated, strained."""
    supercell = structure.copy()
    supercell.make_supercell([1, 2, 1])
    permuted = Structure.from_sites([structure[int(i)] for i in rng.permutation(len(structure))])
    translated = structure.copy()
    translated.translate_sites(list(range(len(translated))), rng.random(3))
    strained = structure.copy()
    strained.apply_strain([0.01, -0.01, 0.015])
    strained.perturb(0.01)
    return [supercell, permuted, translated, strained]


def near_misses(structure: Structure) -> list[tuple[Structure, bool]]:
    """Copies near the matcher's tolerance, each with whether it must be a miss.

    One lattice vector is stretched: by 1.8 (a clear miss, far beyond ltol=0.3 after the
    matcher's volume scaling) and by 1.35 / 1.45 (near the boundary; either verdict).
    """
    out = []
    for factor, must_miss in ((1.8, True), (1.35, False), (1.45, False)):
        matrix = structure.lattice.matrix.copy()
        matrix[0] *= factor
        stretched = Structure(Lattice(matrix), structure.species, structure.frac_coords)
        out.append((stretched, must_miss))
    return out
