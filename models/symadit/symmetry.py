"""Symmetry exactness checks: is the detected space group the requested one or a supergroup?

The group–subgroup lattice comes from pyxtal's tables of maximal subgroups (t- and
k-subgroups, isomorphic ones included); :func:`supergroups` is the transitive closure read
upwards. A crystal generated for group ``g`` is *exact* if spglib (``symprec=0.01``) finds
``g`` or one of its supergroups: extra symmetry from accidental special values is allowed,
missing symmetry is not.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import spglib
from pymatgen.core import Structure


@lru_cache(maxsize=1)
def _max_subgroups() -> dict[int, frozenset[int]]:
    from pyxtal.symmetry import Group

    return {h: frozenset(Group(h, quick=True).get_max_subgroup_numbers()) for h in range(1, 231)}


@lru_cache(maxsize=1)
def _subgroup_closure() -> dict[int, frozenset[int]]:
    direct = _max_subgroups()
    closure: dict[int, frozenset[int]] = {}

    def visit(h: int) -> frozenset[int]:
        if h in closure:
            return closure[h]
        closure[h] = frozenset({h})  # guards the isomorphic self-loops
        subs = {h}
        for s in direct[h]:
            if s != h:
                subs |= visit(s)
        closure[h] = frozenset(subs)
        return closure[h]

    for h in range(230, 0, -1):
        visit(h)
    # a second pass settles groups first reached through a self-loop guard
    changed = True
    while changed:
        changed = False
        for h in range(1, 231):
            subs = set(closure[h])
            for s in list(subs):
                subs |= closure[s]
            if len(subs) != len(closure[h]):
                closure[h] = frozenset(subs)
                changed = True
    return closure


def subgroups(group: int) -> frozenset[int]:
    """Space-group types that are subgroups of ``group`` (itself included)."""
    return _subgroup_closure()[int(group)]


@lru_cache(maxsize=256)
def supergroups(group: int) -> frozenset[int]:
    """Space-group types that contain ``group`` as a subgroup (itself included)."""
    closure = _subgroup_closure()
    return frozenset(h for h in range(1, 231) if int(group) in closure[h])


def detect_spacegroup(
    structure: Structure, symprec: float = 0.01, angle_tolerance: float = -1.0
) -> int:
    """International number spglib finds for ``structure`` (0 if spglib finds nothing)."""
    cell: Any = (structure.lattice.matrix, structure.frac_coords, [s.specie.Z for s in structure])
    data = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=angle_tolerance)
    return 0 if data is None else int(data.number)


def symmetry_is_exact(structure: Structure, group: int, symprec: float = 0.01) -> tuple[bool, int]:
    """``(ok, detected)``: spglib's group at ``symprec`` is ``group`` or a supergroup of it."""
    detected = detect_spacegroup(structure, symprec=symprec)
    return detected in supergroups(int(group)), detected
