"""Ingestion on real MP-20 rows plus deliberately bad input."""

from pathlib import Path

import pandas as pd
import pytest
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from tasks.core.records import read_records, structure_from_json
from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.ingest.run import ingest_entries_to_dir, ingest_source, sources_in
from tasks.ingest.sources import entries_from_file

N_GOOD = 12


def _bad_rows() -> list[dict[str, str]]:
    disordered = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    return [
        {"material_id": "bad-garbage", "cif": "data_x\n_this is not a cif\n"},
        {"material_id": "bad-disordered", "cif": disordered.to(fmt="cif")},
        {"material_id": "bad-overlap", "cif": overlapping.to(fmt="cif")},
        {"material_id": "bad-empty", "cif": ""},
    ]


@pytest.fixture(scope="module")
def mixed_csv(tmp_path_factory, mp20_test_sample) -> Path:
    good = pd.read_csv(mp20_test_sample, nrows=N_GOOD)[["material_id", "cif"]]
    frame = pd.concat([good, pd.DataFrame(_bad_rows())], ignore_index=True)
    path = tmp_path_factory.mktemp("raw") / "mixed.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def ingested(mixed_csv, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    config = IngestConfig(n_workers=2, chunk_size=4, cache_dir=cache)
    out = tmp_path_factory.mktemp("out")
    first = ingest_source(DatasetSource(kind="csv", path=mixed_csv), out, config)
    second = ingest_source(DatasetSource(kind="csv", path=mixed_csv), out / "again", config)
    return first, second


def test_outputs_and_rejects(ingested, mixed_csv) -> None:
    result, _ = ingested
    for path in (result.dataset, result.rejects, result.stats_file, *result.plots):
        assert path.exists() and path.stat().st_size > 0
    everything = read_records(result.dataset, status=None)
    assert len(everything) == N_GOOD + 4  # nothing dropped
    rejects = pd.read_csv(result.rejects).set_index("id")
    reasons = rejects["reason"].to_dict()
    assert set(reasons) == {f"mixed:bad-{k}" for k in ("garbage", "disordered", "overlap", "empty")}
    assert "partial occupancy" in reasons["mixed:bad-disordered"]
    assert "overlapping atoms" in reasons["mixed:bad-overlap"]
    assert "empty" in reasons["mixed:bad-empty"]
    assert "malformed cif" in reasons["mixed:bad-garbage"]
    assert rejects.loc["mixed:bad-overlap", "raw"].startswith("# generated using pymatgen")
    counts = result.stats["counts"]
    assert (counts["ok"], counts["rejected"], counts["failed"]) == (N_GOOD, 4, 0)


def test_records_agree_with_an_independent_analysis(ingested, mp20_test_sample) -> None:
    result, _ = ingested
    ok = read_records(result.dataset)
    raw = pd.read_csv(mp20_test_sample, nrows=N_GOOD).set_index("material_id")
    for row in ok.itertuples():
        original = Structure.from_str(raw.loc[row.material_id, "cif"], fmt="cif")
        analyzer = SpacegroupAnalyzer(original, symprec=0.1)
        assert row.spacegroup == analyzer.get_space_group_number()
        symmetrized = analyzer.get_symmetrized_structure()
        assert row.n_orbits == len(symmetrized.equivalent_sites)
        stored = structure_from_json(row.structure)
        assert len(stored) == row.n_atoms == len(original.get_primitive_structure())
        assert stored.composition.reduced_formula == original.composition.reduced_formula
        assert len(row.orbit_index) == row.n_atoms == len(row.wyckoff_letters)
    stats = result.stats
    assert stats["p1_fraction"] == pytest.approx((ok["spacegroup"] == 1).mean())
    assert stats["orbits_per_crystal"]["mean"] == pytest.approx(ok["n_orbits"].mean())


def test_second_run_hits_the_cache(ingested) -> None:
    first, second = ingested
    assert first.n_computed == N_GOOD + 4 and first.n_cached == 0
    assert second.n_cached == N_GOOD + 4 and second.n_computed == 0
    a = read_records(first.dataset, status=None)
    b = read_records(second.dataset, status=None)
    pd.testing.assert_frame_equal(a, b)


def test_cif_dir_and_extxyz_sources(tmp_path, mp20_test_sample) -> None:
    frame = pd.read_csv(mp20_test_sample, nrows=3)
    structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    cif_dir = tmp_path / "cifs"
    cif_dir.mkdir()
    for mid, s in zip(frame["material_id"], structures, strict=True):
        s.to(filename=str(cif_dir / f"{mid}.cif"))
    (cif_dir / "broken.cif").write_text("nonsense")
    entries = entries_from_file(cif_dir, "cifs")
    assert sorted(e.material_id for e in entries) == sorted([*frame["material_id"], "broken"])
    atoms = [AseAtomsAdaptor.get_atoms(s) for s in structures]
    for mid, a in zip(frame["material_id"], atoms, strict=True):
        a.info["id"] = mid
    xyz = tmp_path / "set.extxyz"
    ase_write(xyz, atoms, format="extxyz")
    xyz_entries = entries_from_file(xyz, "set")
    assert [e.material_id for e in xyz_entries] == list(frame["material_id"])
    config = IngestConfig(n_workers=1, cache_dir=tmp_path / "cache", plots=False)
    result = ingest_entries_to_dir(entries + xyz_entries, "mixed", tmp_path / "out", config)
    assert result.stats["counts"]["ok"] == 6
    assert result.stats["counts"]["rejected"] == 1
    assert set(sources_in(cif_dir)) == {"cifs"}


def test_a_repeated_id_is_ingested_under_a_new_id(tmp_path, mp20_test_sample) -> None:
    rows = pd.read_csv(mp20_test_sample, nrows=2)
    path = tmp_path / "dup.csv"
    pd.concat([rows, rows.iloc[:1]]).to_csv(path, index=False)
    config = IngestConfig(n_workers=1, cache_dir=tmp_path, plots=False)
    result = ingest_source(DatasetSource(kind="csv", path=path), tmp_path / "out", config)
    records = read_records(result.dataset, status=None).set_index("id")
    first = rows["material_id"][0]
    assert len(records) == 3
    assert records.loc[f"dup:{first}#2", "status"] == "ok"
    assert result.stats["counts"]["ok"] == 3


def test_folder_of_splits_gives_one_source_per_split(shared_data) -> None:
    sources = sources_in(shared_data / "mp_20", limit=5)
    assert set(sources) == {"mp_20/train_partial", "mp_20/val", "mp_20/test"}
