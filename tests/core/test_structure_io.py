"""THE reader of structure sets: one entry per input entry, bad ones with their reason."""

from __future__ import annotations

import logging

import pytest
from support.structures import rocksalt, sample_structures

from tasks.core.records import STATUS_REJECTED, CrystalRecord, write_records
from tasks.core.structure_io import (
    dataset_fingerprint,
    read_entries,
    read_structures,
    write_structures,
)


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
    assert entries["empty"] == (None, "empty input")
    assert entries["garbage"][0] is None and entries["garbage"][1]


def test_rejected_records_and_bad_json(tmp_path):
    records = [
        CrystalRecord(id="bad", source="t", status=STATUS_REJECTED, reason="too many atoms"),
        CrystalRecord(id="broken", source="t", structure="{not json"),
    ]
    path = write_records(records, tmp_path / "r.parquet")
    entries = {i: (s, r) for i, s, r in read_structures(path)}
    assert entries["bad"] == (None, "record status rejected: too many atoms")
    assert entries["broken"][0] is None and "malformed json" in entries["broken"][1]


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


def test_upper_case_and_multi_block_cif_files(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (_, first), (_, second) = _items()[:2]
    (folder / "ONE.CIF").write_text(first.to(fmt="cif"))
    (folder / "two.cif").write_text(first.to(fmt="cif") + "\n" + second.to(fmt="cif"))
    entries = {i: (s, r) for i, s, r in read_structures(folder)}
    assert len(entries) == 3 and "ONE" in entries  # any letter case of .cif
    two = sorted(i for i in entries if i.startswith("two:"))  # one entry per data_ block
    assert len(two) == 2, entries
    assert all(s is not None for s, _ in entries.values())
    assert sorted(s.composition.reduced_formula for s, _ in entries.values()) == sorted(
        [first.composition.reduced_formula] * 2 + [second.composition.reduced_formula]
    )


def test_extxyz_is_read_frame_by_frame(tmp_path):
    items = _items()[:3]
    path = write_structures(items, tmp_path / "set.extxyz")
    text = path.read_text()
    first_frame_lines = int(text.splitlines()[0]) + 2
    lines = text.splitlines(keepends=True)
    # frame 2 gets an unknown element; a truncated frame is appended at the end
    frame2 = int(lines[first_frame_lines]) + 2
    body = lines[first_frame_lines + 2].split(maxsplit=1)
    lines[first_frame_lines + 2] = "Qq " + body[1]
    bad = tmp_path / "bad.extxyz"
    bad.write_text("".join(lines) + "".join(lines[:3]))
    entries = read_structures(bad)
    assert len(entries) == 4
    assert entries[0][0] == items[0][0] and entries[0][1] is not None
    assert entries[1][1] is None and entries[1][2]  # unknown element: this frame only
    assert entries[2][1] is not None
    assert entries[3][1] is None and "truncated frame" in entries[3][2]
    assert frame2 > 2


def test_csv_rows_are_each_accounted_for(tmp_path, caplog):
    (_, first), (_, second) = _items()[:2]
    cif_a, cif_b = first.to(fmt="cif"), second.to(fmt="cif")
    rows = [
        b"material_id,cif",
        b'mp-1,"' + cif_a.encode() + b'"',
        b'mp-1,"' + cif_b.encode() + b'"',  # duplicate id
        b',"' + cif_b.encode() + b'"',  # empty id
        b'mp-9,"data_q\n_cell_length_a 3\xff"',  # a non-UTF-8 byte
        b"mp-10,",  # empty cif
    ]
    path = tmp_path / "t.csv"
    path.write_bytes(b"\n".join(rows) + b"\n")
    with caplog.at_level(logging.WARNING, logger="tasks.core.structure_io"):
        entries = read_entries(path)
    assert [e.id for e in entries] == ["mp-1", "mp-1#2", "t:row-2", "mp-9", "mp-10"]
    reasons = {e.id: e.reason for e in entries}
    assert reasons["mp-1"] == "" and reasons["t:row-2"] == ""
    # a repeated id is still a crystal: read under <id>#2, with a warning naming it
    assert reasons["mp-1#2"] == "" and "mp-1#2" in caplog.text
    parsed = {e.id: e.parse()[0] for e in entries}
    assert parsed["mp-1#2"] == second
    assert reasons["mp-9"] == "non-UTF-8 bytes in the input"
    assert reasons["mp-10"] == "empty cif field"


def test_one_ranking_of_id_columns(tmp_path):
    import pandas as pd

    structure = _items()[0][1]
    frame = pd.DataFrame(
        {"material_id": ["mp-1"], "id": ["rec-1"], "cif": [structure.to(fmt="cif")]}
    )
    frame.to_csv(tmp_path / "both.csv", index=False)
    frame.to_parquet(tmp_path / "both.parquet")
    # every reader of the project gives the same table the same ids: 'id' first
    assert read_entries(tmp_path / "both.csv")[0].id == "rec-1"
    assert read_entries(tmp_path / "both.parquet")[0].id == "rec-1"
    assert read_entries(tmp_path / "both.csv", id_column="material_id")[0].id == "mp-1"


def test_repeated_ids_in_an_extxyz_are_each_read(tmp_path):
    """A generator's file that repeats ids (and holds an id like a renamed one) loses nothing."""
    (_, first), (_, second) = _items()[:2]
    path = write_structures([("a", first), ("b", second)], tmp_path / "x.extxyz")
    text = path.read_text()
    path.write_text(text + text.replace("id=a", "id=a#2") + text)
    ids = [i for i, s, why in read_structures(path) if s is not None and not why]
    # an id that looks like a renamed one keeps it; the repeats skip over it
    assert ids == ["a", "b", "a#2", "b#2", "a#3", "b#3"]
