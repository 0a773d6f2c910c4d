"""Parse, check, reduce and analyse one raw crystal entry into a :class:`CrystalRecord`.

This is the per-crystal work of ingestion; it never raises. Bad input becomes a
``rejected`` record with the reason, an unexpected analysis error a ``failed`` record.
"""

from __future__ import annotations

import hashlib
import json

from pymatgen.core import Structure

from representation.atom_order import AtomOrder, mcflow_order
from representation.wyckoff_tokens import structure_to_tokens
from tasks.core.checks import structure_problem
from tasks.core.config import content_dump
from tasks.core.records import STATUS_FAILED, STATUS_REJECTED, CrystalRecord, structure_to_json
from tasks.core.structure_io import parse_payload
from tasks.ingest.config import IngestConfig
from tasks.ingest.sources import RawEntry

#: Bump when the analysis or the representations change, to invalidate cached results.
ANALYSIS_VERSION = "3"


class RejectedInputError(ValueError):
    """The input is not a crystal the pipeline accepts; the message is the reason."""


def cache_key(entry: RawEntry, config: IngestConfig) -> str:
    """Content key of an entry's analysis under the given settings (placement excluded)."""
    payload = json.dumps(
        [ANALYSIS_VERSION, entry.fmt, entry.payload, content_dump(config)], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def parse_entry(entry: RawEntry) -> Structure:
    """Structure of a raw entry, or :class:`RejectedInputError` saying why not."""
    if entry.error:
        raise RejectedInputError(entry.error)
    try:
        return parse_payload(entry.payload, entry.fmt)
    except ValueError as err:
        raise RejectedInputError(str(err)) from err


def check_structure(structure: Structure, config: IngestConfig) -> None:
    """Raise :class:`RejectedInputError` unless the structural sanity rule passes.

    The rule (:func:`tasks.core.checks.structure_problem`) refuses corrupted cells before
    any neighbour search, so a cell of 10^8 Å is rejected in microseconds.
    """
    problem = structure_problem(structure, min_distance=config.min_distance)
    if problem:
        raise RejectedInputError(problem)


def reduce_structure(structure: Structure, tolerance: float = 0.01) -> Structure:
    """Primitive, Niggli-reduced cell (primitive search at ``tolerance`` Å)."""
    return structure.get_primitive_structure(tolerance=tolerance).get_reduced_structure()


def analyse_entry(entry: RawEntry, config: IngestConfig) -> CrystalRecord:
    """Turn a raw entry into a record (``ok``, ``rejected`` or ``failed``, never raising).

    Steps: parse → the structural sanity rule (occupancy, finite and sane cell, volume,
    overlaps including periodic images) → primitive Niggli cell →
    size check → spglib analysis and MCFlow atom order → pyxtal Wyckoff tokens.
    """
    record = CrystalRecord(id=entry.id, source=entry.source, material_id=entry.material_id)
    try:
        structure = parse_entry(entry)
        check_structure(structure, config)
        primitive = reduce_structure(structure, config.primitive_tol)
        if len(primitive) > config.max_atoms:
            raise RejectedInputError(
                f"{len(primitive)} atoms in the primitive cell > {config.max_atoms}"
            )
        try:
            order = mcflow_order(primitive, config.symprec, config.angle_tolerance)
        except Exception as err:
            raise RejectedInputError(f"symmetry analysis failed: {err}") from err
        try:
            tokens = structure_to_tokens(order.structure, tol=config.pyxtal_tol)
        except ValueError as err:
            raise RejectedInputError(str(err)) from err
    except RejectedInputError as err:
        record.status, record.reason = STATUS_REJECTED, str(err)
        return record
    except Exception as err:  # a bug or a library failure: keep the entry, say what happened
        record.status, record.reason = STATUS_FAILED, f"{type(err).__name__}: {err}"
        return record
    fill_from_order(record, order)
    record.wyckoff = tokens.to_json()
    return record


def fill_from_order(record: CrystalRecord, order: AtomOrder) -> CrystalRecord:
    """Set a record's structure and symmetry columns from an MCFlow atom order (in place)."""
    ordered = order.structure
    record.formula = ordered.composition.reduced_formula
    record.n_atoms = len(ordered)
    record.n_elements = len(ordered.composition.elements)
    record.n_orbits = order.n_orbits
    record.spacegroup = order.spacegroup
    record.structure = structure_to_json(ordered)
    record.orbit_index = order.orbit_index.tolist()
    record.wyckoff_letters = "".join(order.wyckoff_letters)
    return record
