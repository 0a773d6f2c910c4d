"""The crystal record: one row per crystal, with a stable id, shared by every stage.

A processed dataset is a parquet file of :class:`CrystalRecord` rows. Stages downstream add
columns or write sibling tables keyed by ``id`` (see the README's data contracts).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from tasks.core.atomic import atomic_write

STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
STATUS_FAILED = "failed"


@dataclass
class CrystalRecord:
    """One crystal as the pipeline stores it.

    Attributes
    ----------
    id
        Stable id: ``<source>:<material id>`` for dataset entries, ``gen-<hash>`` for
        generated crystals (see :func:`structure_hash`).
    source
        Dataset or run the crystal came from (``mp_20/train``, ``samples/symadit``...).
    status, reason
        ``ok``, ``rejected`` (bad input, with the reason) or ``failed`` (an analysis error).
    structure
        pymatgen JSON of the primitive Niggli cell, sites in MCFlow order.
    spacegroup
        International number at the ingest ``symprec``.
    wyckoff
        JSON of the SymADiT Wyckoff tokens (:class:`representation.WyckoffTokens`).
    orbit_index, wyckoff_letters
        Per atom of ``structure``: its orbit (0..K-1, contiguous) and Wyckoff letter.
    """

    id: str
    source: str
    status: str = STATUS_OK
    reason: str = ""
    material_id: str = ""
    formula: str = ""
    n_atoms: int = 0
    n_elements: int = 0
    n_orbits: int = 0
    spacegroup: int = 0
    structure: str = ""
    wyckoff: str = ""
    orbit_index: list[int] = field(default_factory=list)
    wyckoff_letters: str = ""
    content_hash: str = ""

    def to_structure(self) -> Structure:
        """The stored primitive cell as a pymatgen ``Structure``."""
        if not self.structure:
            raise ValueError(f"record {self.id} has no structure (status={self.status})")
        return Structure.from_dict(json.loads(self.structure))


RECORD_COLUMNS = [f.name for f in fields(CrystalRecord)]


def structure_to_json(structure: Structure) -> str:
    """Serialize a structure losslessly (pymatgen JSON)."""
    return json.dumps(structure.as_dict())


def structure_from_json(text: str) -> Structure:
    """Inverse of :func:`structure_to_json`."""
    return Structure.from_dict(json.loads(text))


def structure_hash(structure: Structure, decimals: int = 4) -> str:
    """Content hash of a structure that ignores site order and float noise.

    The structure is reduced to its Niggli primitive cell, sites are sorted by species and
    rounded fractional coordinates; lattice and coordinates are rounded to ``decimals``.
    Identical inputs always give the same hash; symmetry-equivalent but differently
    oriented copies may not (use :mod:`tasks.evaluate.matching` for that).
    """
    prim = structure.get_primitive_structure().get_reduced_structure()
    frac = np.round(np.mod(prim.frac_coords, 1.0), decimals) % 1.0
    rows = sorted(
        (site.species_string, *map(float, xyz)) for site, xyz in zip(prim, frac, strict=True)
    )
    payload = json.dumps(
        {"lattice": np.round(prim.lattice.matrix, decimals).tolist(), "sites": rows},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def records_to_frame(records: list[CrystalRecord]) -> pd.DataFrame:
    """Records as a DataFrame with the documented columns (in order)."""
    return pd.DataFrame([asdict(r) for r in records], columns=RECORD_COLUMNS)


def write_records(records: list[CrystalRecord] | pd.DataFrame, path: str | Path) -> Path:
    """Atomically write records to a parquet file."""
    frame = records if isinstance(records, pd.DataFrame) else records_to_frame(records)
    return atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def read_records(path: str | Path, status: str | None = STATUS_OK) -> pd.DataFrame:
    """Read a processed dataset; by default only the ``ok`` rows."""
    frame = pd.read_parquet(path)
    if status is not None:
        frame = frame[frame["status"] == status].reset_index(drop=True)
    return frame


def load_structures(path: str | Path) -> tuple[list[str], list[Structure]]:
    """Ids and structures of the ``ok`` records of a processed dataset."""
    frame = read_records(path)
    return list(frame["id"]), [structure_from_json(s) for s in frame["structure"]]
