"""The global Wyckoff vocabulary: every (space group, Wyckoff letter) pair of the 230 groups.

Built once per process from pyxtal's tables (standard settings). For each position it holds
the representative operation ``x -> R x + t`` and a *projection* ``x -> M x + b`` onto the
position's free subspace, which the symmetrizers in :mod:`models.symadit.symmetrize`
apply in batches.

The free-coordinate mask marks, for every free parameter of the position, one coordinate
row that carries it with coefficient ±1 (``x, 2x, z`` → rows 0 and 2). Those masked
coordinates determine the representative completely, so a model predicts (and is trained
on) exactly them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

#: The number of Wyckoff positions the SymADiT paper states for the 230 groups.
PAPER_VOCAB_SIZE = 1731

CRYSTAL_SYSTEMS = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)

#: Free cell parameters (a, b, c, alpha, beta, gamma) per crystal system, conventional cell.
CELL_FREE_MASK: dict[str, tuple[int, ...]] = {
    "triclinic": (1, 1, 1, 1, 1, 1),
    "monoclinic": (1, 1, 1, 0, 1, 0),
    "orthorhombic": (1, 1, 1, 0, 0, 0),
    "tetragonal": (1, 0, 1, 0, 0, 0),
    "trigonal": (1, 0, 1, 0, 0, 0),
    "hexagonal": (1, 0, 1, 0, 0, 0),
    "cubic": (1, 0, 0, 0, 0, 0),
}


def crystal_system(spacegroup: int) -> str:
    """Crystal system of an international space-group number (1..230)."""
    if not 1 <= spacegroup <= 230:
        raise ValueError(f"space group must be in 1..230, got {spacegroup}")
    bounds = (2, 15, 74, 142, 167, 194, 230)
    return next(
        name for name, top in zip(CRYSTAL_SYSTEMS, bounds, strict=True) if spacegroup <= top
    )


def _projection(rot: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projection ``x -> M x + b`` onto ``{R p + t}`` reading each free parameter off one row."""
    pick = np.zeros((3, 3))  # params = pick @ (x - t)
    mask = np.zeros(3, dtype=bool)
    for j in np.flatnonzero(np.abs(rot).sum(axis=0) > 1e-8):
        # rows where parameter j appears alone, preferring coefficient +1 over -1 over others
        rows = [i for i in range(3) if abs(rot[i, j]) > 1e-8 and np.count_nonzero(rot[i]) == 1]
        if not rows:
            raise ValueError(f"parameter {j} of operation {rot} never appears alone in a row")
        rows.sort(key=lambda i: (abs(rot[i, j]) != 1.0, rot[i, j] < 0, i))
        row = rows[0]
        pick[j, row] = 1.0 / rot[row, j]
        mask[row] = True
    matrix = rot @ pick
    offset = trans - matrix @ trans
    return matrix, offset, mask


@dataclass(frozen=True, eq=False)
class WyckoffVocabulary:
    """Tables over the global Wyckoff index ``0 .. size-1``.

    Attributes
    ----------
    labels
        ``"<sg>_<multiplicity><letter>"``, e.g. ``"225_4a"``.
    spacegroup, letter, multiplicity, dof
        Per position.
    rotation, translation
        Representative operation ``x -> R x + t`` (``(V, 3, 3)`` and ``(V, 3)``).
    proj_matrix, proj_offset
        Projection ``x -> M x + b`` onto the free subspace (idempotent, image = the position).
    coord_mask
        ``(V, 3)`` bool, the coordinates that carry the free parameters.
    group_mask
        ``(231, V)`` bool, row ``g`` marks the positions of space group ``g`` (row 0 unused).
    orbit_rotation, orbit_translation, orbit_start
        Every operation of every position's orbit in the conventional cell, concatenated:
        position ``i`` maps its representative ``x`` to the ``multiplicity[i]`` atoms
        ``orbit_rotation[k] @ x + orbit_translation[k]`` for ``k`` in
        ``orbit_start[i] .. orbit_start[i + 1] - 1`` (pyxtal's order).
    """

    labels: tuple[str, ...]
    spacegroup: np.ndarray
    letter: tuple[str, ...]
    multiplicity: np.ndarray
    dof: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    proj_matrix: np.ndarray
    proj_offset: np.ndarray
    coord_mask: np.ndarray
    group_mask: np.ndarray
    orbit_rotation: np.ndarray
    orbit_translation: np.ndarray
    orbit_start: np.ndarray

    @property
    def size(self) -> int:
        """Number of Wyckoff positions (1731 for pyxtal's standard settings)."""
        return len(self.labels)

    def index(self, spacegroup: int, letter: str) -> int:
        """Global index of ``(spacegroup, letter)``."""
        try:
            return _label_index(self)[(int(spacegroup), letter)]
        except KeyError:
            raise KeyError(f"space group {spacegroup} has no Wyckoff position {letter!r}") from None


@cache
def _label_index(vocab: WyckoffVocabulary) -> dict[tuple[int, str], int]:
    pairs = zip(vocab.spacegroup, vocab.letter, strict=True)
    return {(int(g), letter): i for i, (g, letter) in enumerate(pairs)}


@lru_cache(maxsize=1)
def wyckoff_vocabulary() -> WyckoffVocabulary:
    """Build (once per process) the vocabulary from pyxtal's Wyckoff tables."""
    from pyxtal.symmetry import Group

    labels, groups, letters, mults, dofs = [], [], [], [], []
    rots, transs, mats, offs, masks = [], [], [], [], []
    orbit_rots, orbit_transs = [], []
    for g in range(1, 231):
        # pyxtal lists positions from the general one down to 'a'; store them 'a' first
        for wp in reversed(Group(g).Wyckoff_positions):
            op = wp.ops[0]
            rot, trans = (
                np.asarray(op.rotation_matrix, float),
                np.asarray(op.translation_vector, float),
            )
            matrix, offset, mask = _projection(rot, trans)
            labels.append(f"{g}_{wp.multiplicity}{wp.letter}")
            groups.append(g)
            letters.append(wp.letter)
            mults.append(wp.multiplicity)
            dofs.append(wp.get_dof())
            rots.append(rot)
            transs.append(trans)
            mats.append(matrix)
            offs.append(offset)
            masks.append(mask)
            if len(wp.ops) != wp.multiplicity:
                raise ValueError(f"{labels[-1]}: {len(wp.ops)} operations, not the multiplicity")
            orbit_rots += [np.asarray(o.rotation_matrix, float) for o in wp.ops]
            orbit_transs += [np.asarray(o.translation_vector, float) for o in wp.ops]
    group_arr = np.asarray(groups)
    group_mask = np.zeros((231, len(labels)), dtype=bool)
    group_mask[group_arr, np.arange(len(labels))] = True
    return WyckoffVocabulary(
        labels=tuple(labels),
        spacegroup=group_arr,
        letter=tuple(letters),
        multiplicity=np.asarray(mults),
        dof=np.asarray(dofs),
        rotation=np.stack(rots),
        translation=np.stack(transs),
        proj_matrix=np.stack(mats),
        proj_offset=np.stack(offs),
        coord_mask=np.stack(masks),
        group_mask=group_mask,
        orbit_rotation=np.stack(orbit_rots),
        orbit_translation=np.stack(orbit_transs),
        orbit_start=np.concatenate([[0], np.cumsum(mults)]),
    )
