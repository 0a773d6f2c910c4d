"""Reading and writing structure sets; bad files are entries with reasons."""

from __future__ import annotations

import pytest

from tasks.records import STATUS_REJECTED, CrystalRecord, write_records
from tasks.structure_io import dataset_fingerprint, read_structures, write_structures
from tests.evaluation.helpers import rocksalt, sample_structures


def _items():
    return [(i, s) for i, s in sample_structures("mp20_test_sample200.csv.gz", 5)]


@pytest.mark.parametrize("name", ["cifs", "set.extxyz", "set.parquet"])
def test_round_trip(tmp_path, name):
    items = _items()
    path = write_structures(items, tmp_path / name)
    back = read_structures(path)
    assert sorted(i for i, _, _ in back) == sorted(i for i, _ in items)
    by_id = {i: s for i, s, _ in back}
    for ident, structure in items:
        assert by_id[ident] is not None
        assert by_id[ident].composition == structure.composition
        assert abs(by_id[ident].volume - structure.volume) < 1e-3


def test_bad_cif_files_are_verdicts(tmp_path):
    folder = tmp_path / "cifs"
    write_structures([("good", rocksalt())], folder)
    (folder / "empty.cif").write_text("")
    (folder / "garbage.cif").write_text("data_x\n_cell_length_a 3\nthis is not a cif\n")
    entries = {i: (s, r) for i, s, r in read_structures(folder)}
    assert entries["good"][0] is not None and entries["good"][1] == ""
    assert entries["empty"] == (None, "empty CIF")
    assert entries["garbage"][0] is None and entries["garbage"][1]


def test_rejected_records_and_bad_json(tmp_path):
    records = [
        CrystalRecord(id="bad", source="t", status=STATUS_REJECTED, reason="too many atoms"),
        CrystalRecord(id="broken", source="t", structure="{not json"),
    ]
    path = write_records(records, tmp_path / "r.parquet")
    entries = {i: (s, r) for i, s, r in read_structures(path)}
    assert entries["bad"] == (None, "record status rejected: too many atoms")
    assert entries["broken"][0] is None and "malformed structure JSON" in entries["broken"][1]


def test_empty_extxyz_and_missing_path(tmp_path):
    empty = tmp_path / "e.extxyz"
    empty.write_text("")
    assert read_structures(empty) == [("e", None, "empty file")]
    with pytest.raises(FileNotFoundError):
        read_structures(tmp_path / "missing.cif")
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    with pytest.raises(ValueError, match="unrecognised"):
        read_structures(other)


def test_csv_ids_and_fingerprint(mp20_test_sample, tmp_path):
    entries = read_structures(mp20_test_sample, limit=3)
    assert len(entries) == 3 and entries[0][0].startswith("mp-")
    copy = tmp_path / "copy.csv.gz"
    copy.write_bytes(mp20_test_sample.read_bytes())
    assert dataset_fingerprint(copy) == dataset_fingerprint(mp20_test_sample)
    copy.write_bytes(b"other")
    assert dataset_fingerprint(copy) != dataset_fingerprint(mp20_test_sample)
