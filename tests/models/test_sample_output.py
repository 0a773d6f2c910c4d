"""The shared sampling output contract: table with failures, extxyz and CIFs of ok samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.io import read as ase_read
from pymatgen.core import Lattice, Structure

from models.sample_output import SampleRecord, read_samples, sample_id, write_samples


def test_write_samples_roundtrip(tmp_path: Path) -> None:
    nacl = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    records = [
        SampleRecord.from_structure(
            sample_id("m", 3, 0), "m", "dng", nacl, spacegroup_requested=225, extra={"a": 1}
        ),
        SampleRecord.failed(sample_id("m", 3, 1), "m", "dng", "pyxtal could not expand"),
    ]
    paths = write_samples(tmp_path, records)
    back = read_samples(paths["table"])
    assert [r.status for r in back] == ["ok", "failed"]
    assert back[0].spacegroup_requested == 225 and back[1].spacegroup_requested is None
    assert back[0].extra == {"a": 1}
    assert back[1].reason == "pyxtal could not expand" and back[1].structure is None
    assert back[0].to_structure() == nacl
    frames = ase_read(paths["extxyz"], index=":")
    assert [f.info["id"] for f in frames] == ["m-3-000000"]
    assert sorted(p.name for p in paths["cifs"].iterdir()) == ["m-3-000000.cif"]
    with pytest.raises(ValueError):
        write_samples(tmp_path, [records[0], records[0]])
