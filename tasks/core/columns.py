"""One vocabulary of the column names stage tables share, keyed by crystal ``id``.

Every table a stage writes (records, samples, verdicts, relaxations, hull rows, DFT results)
uses these names for the same things, so a report can join any two of them on ``id``.
"""

from __future__ import annotations

from enum import StrEnum


class Col(StrEnum):
    """Shared column names (members compare and hash as the plain strings)."""

    ID = "id"
    SOURCE = "source"
    STATUS = "status"
    REASON = "reason"
    FORMULA = "formula"
    N_ATOMS = "n_atoms"
    N_ELEMENTS = "n_elements"
    N_ORBITS = "n_orbits"
    SPACEGROUP = "spacegroup"
    STRUCTURE = "structure"
    CONTENT_HASH = "content_hash"
    # evaluation
    VALID_STRUCT = "valid_struct"
    VALID_COMP = "valid_comp"
    IS_UNIQUE = "is_unique"
    IN_NOVELTY_DRAW = "in_novelty_draw"
    NOVEL = "novel"
    KNOWN = "known"
    MATCHED_REFERENCE = "matched_reference"
    # MLIP screen
    ENERGY = "energy"
    ENERGY_PER_ATOM = "energy_per_atom"
    CONVERGED = "converged"
    MLIP_VERSION = "mlip_version"
    CHEMSYS = "chemsys"
    E_HULL = "e_hull"
    #: a committee's ranking E_hull: the highest (most cautious) of its members' (NaN when
    #: a member could not place the crystal)
    E_HULL_COMMITTEE = "e_hull_committee"
    SINGLE_POINT = "single_point"
    E_FORM_PER_ATOM = "e_form_per_atom"
    STABLE = "stable"
    METASTABLE = "metastable"
    DECOMPOSITION = "decomposition"
    HULL_STATUS = "hull_status"
    HULL_REASON = "hull_reason"
    MLIP = "mlip"
    CANDIDATE_SINGLE_POINT = "candidate_single_point"
    REFERENCE_SINGLE_POINT = "reference_single_point"
    N_REFERENCE_PHASES = "n_reference_phases"
    COVERAGE_GAPS = "coverage_gaps"
    FLAGS = "flags"
    FLAGGED = "flagged"
    # DFT
    DFT_STATUS = "dft_status"
    E_HULL_DFT = "e_hull_dft"
