"""Structural and compositional validity of crystals (``docs/evaluation.md``).

- **Structural** (CDVAE/ADiT): every interatomic distance ≥ 0.5 Å, periodic images
  included, and cell volume ≥ 0.1 Å³: the project's one structural sanity rule,
  :func:`tasks.core.checks.structure_problem`. Unlike CDVAE's ``distance_matrix`` check it
  also counts an atom's distance to its own periodic images (the shortest lattice vector),
  catches coincident atoms (distance 0), and refuses corrupted cells (lattice vectors over
  1,000 Å, fractional coordinates beyond ±1,000).
- **Compositional** (CDVAE ``smact_validity``, our implementation on the ``smact``
  package): a single element, or an all-metal composition (alloy), is valid; otherwise some
  assignment of SMACT oxidation states must be charge neutral for the reduced
  stoichiometry and pass the Pauling electronegativity test (missing electronegativities
  count as passing, as in CDVAE). CDVAE used the SMACT 2014 oxidation-state list
  (``oxidation_set="smact14"``, the default here).
- **LeMat-GenBench** variant (option): d_ij ≥ 0.5·(0.7 + r_i + r_j) Å with pymatgen atomic
  radii, density and lattice bounds (our choice of bounds, see :class:`LeMatBounds`), space
  group determinable at symprec 0.1, and charge neutral by pymatgen's oxidation-state guess
  (all-metal compositions pass).

Every check returns ``(ok, reason)`` and never raises: bad input is a verdict.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, lru_cache

from pymatgen.core import Composition, Element, Structure
from pymatgen.core.periodic_table import DummySpecies, Species

from tasks.core.checks import geometry_problem, neighbor_pairs, structure_problem
from tasks.evaluate.settings import OxidationSet, ValidityConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidityVerdict:
    """Validity of one crystal, with the reason for each failure ("" when valid)."""

    valid_struct: bool
    struct_reason: str
    valid_comp: bool
    comp_reason: str


def _unknown_species(composition: Composition) -> list[str]:
    """Species that are not real elements (dummy species such as ``X``)."""
    return [
        str(sp)
        for sp in composition.elements
        if isinstance(sp, DummySpecies) or not isinstance(sp, Element | Species)
    ]


def structural_validity(
    structure: Structure, config: ValidityConfig | None = None
) -> tuple[bool, str]:
    """CDVAE/ADiT structural validity: the structural sanity rule of :mod:`tasks.core.checks`.

    Distances ≥ ``min_distance`` (periodic and own images included) and volume ≥
    ``min_volume``, plus the rule's corruption checks.

    Parameters
    ----------
    structure
        The crystal.
    config
        Thresholds (0.5 Å, 0.1 Å³ by default).

    Returns
    -------
    (bool, str)
        Validity and the reason when invalid.
    """
    config = config or ValidityConfig()
    reason = structure_problem(structure, config.min_distance, config.min_volume)
    return not reason, reason


@lru_cache(maxsize=256)
def _element_data(symbol: str, oxidation_set: OxidationSet) -> tuple[tuple[int, ...], float | None]:
    import smact

    element = smact.Element(symbol)
    attr = {"smact14": "oxidation_states_smact14", "icsd24": "oxidation_states_icsd24"}.get(
        oxidation_set, "oxidation_states"
    )
    states = tuple(getattr(element, attr) or ())
    return states, element.pauling_eneg


@lru_cache(maxsize=65536)
def _smact_verdict(
    symbols: tuple[str, ...],
    counts: tuple[int, ...],
    oxidation_set: OxidationSet,
    pauling: bool,
    include_alloys: bool,
) -> tuple[bool, str]:
    import smact
    from smact.screening import pauling_test

    if len(symbols) == 1:
        return True, ""
    if include_alloys and all(s in smact.metals for s in symbols):
        return True, ""
    data = [_element_data(s, oxidation_set) for s in symbols]
    states = [d[0] for d in data]
    if any(not s for s in states):
        missing = [sym for sym, s in zip(symbols, states, strict=True) if not s]
        return False, f"no SMACT oxidation states for {','.join(missing)}"
    electronegs = [d[1] for d in data]
    if math.prod(len(st) for st in states) > _MAX_ENUMERATED:
        return _smact_search(states, counts, electronegs, pauling)
    neutral_found = False
    for ox in itertools.product(*states):
        if sum(o * c for o, c in zip(ox, counts, strict=True)) != 0:
            continue
        neutral_found = True
        if not pauling:
            return True, ""
        try:
            if pauling_test(ox, electronegs):
                return True, ""
        except TypeError:  # missing electronegativity: CDVAE counts it as passing
            return True, ""
    if neutral_found:
        return False, _PAULING_FAILS
    return False, _NOT_NEUTRAL


#: Above this many oxidation-state combinations, :func:`_smact_search` replaces the
#: exhaustive loop (MP-20's compositions, at most 7 elements, stay far below it).
_MAX_ENUMERATED = 200_000
_PAULING_FAILS = "charge-neutral assignments all fail the Pauling electronegativity test"
_NOT_NEUTRAL = "no charge-neutral assignment of SMACT oxidation states"


def _smact_search(
    states: list[tuple[int, ...]],
    counts: tuple[int, ...],
    electronegs: list[float | None],
    pauling: bool,
) -> tuple[bool, str]:
    """The verdict of the exhaustive loop, by a pruned depth-first search.

    Used for compositions with many elements, where the product of oxidation states is too
    large to enumerate (a 12-element sample has ~10^9 combinations). Charges are pruned with
    the reachable range of the remaining elements, and the Pauling criterion (every cation
    less electronegative than every anion) with the running extremes; an element without an
    electronegativity passes the comparison, as in the exhaustive loop.
    """
    n = len(states)
    low = [0] * (n + 1)
    high = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        low[i] = low[i + 1] + min(states[i]) * counts[i]
        high[i] = high[i + 1] + max(states[i]) * counts[i]

    @cache
    def search(i: int, charge: int, cation_max: float, anion_min: float, check: bool) -> bool:
        if not low[i] <= -charge <= high[i]:
            return False
        if i == n:
            return True
        en = electronegs[i]
        for ox in states[i]:
            cmax, amin = cation_max, anion_min
            if check and en is not None:
                if ox > 0:
                    if en >= anion_min:
                        continue
                    cmax = max(cmax, en)
                elif ox < 0:
                    if en <= cation_max:
                        continue
                    amin = min(amin, en)
            if search(i + 1, charge + ox * counts[i], cmax, amin, check):
                return True
        return False

    if not search(0, 0, -math.inf, math.inf, False):
        return False, _NOT_NEUTRAL
    if not pauling:
        return True, ""
    if None not in electronegs:
        return (True, "") if search(0, 0, -math.inf, math.inf, True) else (False, _PAULING_FAILS)
    # a missing electronegativity makes SMACT's test order-dependent (it raises, and CDVAE
    # counts that as passing): test each charge-neutral assignment as the loop does
    from smact.screening import pauling_test

    def neutral(i: int, charge: int, prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if not low[i] <= -charge <= high[i]:
            return
        if i == n:
            yield prefix
            return
        for ox in states[i]:
            yield from neutral(i + 1, charge + ox * counts[i], (*prefix, ox))

    for ox in neutral(0, 0, ()):
        try:
            if pauling_test(ox, electronegs):
                return True, ""
        except TypeError:
            return True, ""
    return False, _PAULING_FAILS


def smact_validity(
    composition: Composition, config: ValidityConfig | None = None
) -> tuple[bool, str]:
    """CDVAE-style compositional validity of a composition.

    Parameters
    ----------
    composition
        Integer-count composition (a structure's ``.composition``).
    config
        Oxidation-state list, Pauling test and alloy options.

    Returns
    -------
    (bool, str)
        Validity and the reason when invalid (unknown elements are invalid).
    """
    config = config or ValidityConfig()
    try:
        elements = sorted(composition.elements, key=str)
        unknown = _unknown_species(composition)
        if unknown or not elements:
            return False, f"unknown element(s): {','.join(unknown) or 'none'}"
        symbols = tuple(e.symbol for e in elements)
        amounts = [composition[e] for e in elements]
        if any(abs(a - round(a)) > 1e-6 or a <= 0 for a in amounts):
            return False, "non-integer or non-positive site counts"
        ints = [round(a) for a in amounts]
        divisor = math.gcd(*ints)
        counts = tuple(i // divisor for i in ints)
        return _smact_verdict(
            symbols, counts, config.oxidation_set, config.pauling_test, config.include_alloys
        )
    except Exception as err:
        return False, f"composition check failed: {type(err).__name__}: {err}"[:300]


def lemat_validity(structure: Structure, config: ValidityConfig | None = None) -> tuple[bool, str]:
    """LeMat-GenBench-style validity (one combined verdict).

    Parameters
    ----------
    structure
        The crystal.
    config
        ``config.lemat`` holds the bounds.

    Returns
    -------
    (bool, str)
        Validity and the first failing criterion.
    """
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    config = config or ValidityConfig()
    bounds = config.lemat
    try:
        bad = geometry_problem(structure.lattice.matrix, structure.frac_coords) or (
            "unknown element(s)" if _unknown_species(structure.composition) else ""
        )
        if bad:
            return False, bad
        if structure.volume <= 0:
            return False, "non-positive volume"
        radii = {el: float(el.atomic_radius or 1.0) for el in structure.composition.elements}
        cutoff = 0.5 * (0.7 + 2 * max(radii.values()))
        centers, points, dists = neighbor_pairs(
            structure.lattice.matrix, structure.frac_coords, cutoff
        )
        species = [structure[i].specie for i in range(len(structure))]
        for i, j, d in zip(centers, points, dists, strict=True):
            need = 0.5 * (0.7 + radii[species[i]] + radii[species[j]])
            if d < need:
                return False, f"distance {d:.3f} Å < {need:.3f} Å ({species[i]}-{species[j]})"
        density = float(structure.density)
        if not bounds.min_density <= density <= bounds.max_density:
            return False, f"density {density:.3g} g/cm^3 outside bounds"
        lengths, angles = structure.lattice.abc, structure.lattice.angles
        if min(lengths) < bounds.min_length or max(lengths) > bounds.max_length:
            return False, "lattice length outside bounds"
        if min(angles) < bounds.min_angle or max(angles) > bounds.max_angle:
            return False, "lattice angle outside bounds"
        SpacegroupAnalyzer(structure, symprec=bounds.symprec).get_space_group_number()
        comp = structure.composition.reduced_composition
        if not all(el.is_metal for el in comp.elements) and not comp.oxi_state_guesses(
            max_sites=-1
        ):
            return False, "no charge-neutral oxidation-state guess"
    except Exception as err:
        return False, f"check failed: {type(err).__name__}: {err}"[:300]
    return True, ""


def check_validity(
    structure: Structure | None, config: ValidityConfig | None = None
) -> ValidityVerdict:
    """Structural and compositional validity of one crystal (``None`` = unreadable).

    With ``config.variant == "lemat"`` the structural verdict is the LeMat-GenBench filter
    and the compositional verdict is still CDVAE's SMACT test.
    """
    config = config or ValidityConfig()
    if structure is None:
        return ValidityVerdict(False, "unreadable", False, "unreadable")
    if config.variant == "lemat":
        ok_s, why_s = lemat_validity(structure, config)
    else:
        ok_s, why_s = structural_validity(structure, config)
    ok_c, why_c = smact_validity(structure.composition, config)
    return ValidityVerdict(ok_s, why_s, ok_c, why_c)
