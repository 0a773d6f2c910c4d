"""Reference energy tables and the papers' hull: coverage, flags, known phases."""

from __future__ import annotations

import pandas as pd
import pytest
from ase.build import bulk
from support.structures import rocksalt
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.records import structure_to_json
from tasks.core.structure_io import parse_payload, read_entries
from tasks.evaluate.known import known_matches
from tasks.mlip.backends import load_mlip
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.mlip.hull import HullError, HullReferences, MLIPHull, hull_references, read_references
from tasks.mlip.reference_table import (
    SHIPPED_TABLE,
    TableMismatchError,
    build_reference_table,
    check_table,
    load_table,
)
from tasks.mlip.results import atoms_to_structure
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import MLIPConfig, MLIPHullConfig, RelaxConfig, ScreenSettings

SINGLE = RelaxConfig(steps=0, scheduler="serial")


@pytest.fixture(scope="module")
def small_table(tmp_path_factory, mp20_train_sample):
    """A table of 12 MP-20 phases (two copies of one id across sources: kept once)."""
    root = tmp_path_factory.mktemp("table")
    rows = pd.read_csv(mp20_train_sample, nrows=12)
    rows.to_csv(root / "a.csv", index=False)
    rows.iloc[:3].to_csv(root / "b.csv", index=False)
    out = build_reference_table([root / "a.csv", root / "b.csv"], root / "t.parquet", relax=SINGLE)
    return load_table(out)


def test_a_table_holds_every_distinct_phase_with_its_provenance(small_table) -> None:
    frame, meta = small_table.frame, small_table.meta
    assert len(frame) == 12 and frame["id"].is_unique
    assert (frame["status"] == "ok").all() and frame["energy_per_atom"].lt(0).all()
    assert meta.mlip_version == load_mlip(MLIPConfig()).version and meta.method == "single_point"
    assert [s.n_entries for s in meta.sources] == [12, 3]
    # the compact structures are the phases, not an approximation of them
    first = read_entries(small_table.path)[0]
    assert first.fmt == "compact" and parse_payload(first.payload, "compact").composition


def test_the_same_energies_as_a_single_point_relaxation(small_table) -> None:
    row = small_table.frame.iloc[0]
    structure = parse_payload(row["crystal"], "compact")
    (again,) = relax_items([("x", structure_to_json(structure))], config=SINGLE)["energy_per_atom"]
    assert again == pytest.approx(row["energy_per_atom"], abs=1e-4)


def test_a_table_of_another_mlip_is_refused(small_table) -> None:
    with pytest.raises(TableMismatchError, match="cannot share a hull"):
        check_table(small_table.meta, "mace-0.3.16:medium.model@abc", small_table.path)
    config = MLIPHullConfig(table=small_table.path)
    with pytest.raises(TableMismatchError, match="hull-reference build"):
        hull_references(config, "mace-0.3.16:medium.model@abc")


def test_shipped_table_serves_the_bundled_chgnet() -> None:
    table = load_table(SHIPPED_TABLE)
    check_table(table.meta, load_mlip(MLIPConfig()).version, table.path)
    assert table.meta.n_ok > 45_000 and table.frame["id"].is_unique
    assert table.meta.bias is not None  # the single-point bias travels with the table
    assert {s.path.split("/")[0] for s in table.meta.sources} == {"shared:mp_20", "shared:mpts_52"}


def test_a_known_rocksalt_is_on_the_shipped_hull_and_known() -> None:
    config = MLIPHullConfig()
    references = hull_references(config, load_mlip(MLIPConfig()).version)
    table = load_table(SHIPPED_TABLE).frame
    nacl = table[table["formula"] == "NaCl"].sort_values("energy_per_atom").iloc[0]
    structure = parse_payload(nacl["crystal"], "compact")
    candidate = relax_items([("cand-NaCl", structure_to_json(structure))], config=SINGLE)
    row = (
        MLIPHull(references, ScreenSettings(relax=SINGLE, hull=config)).evaluate(candidate).iloc[0]
    )
    assert row["e_hull"] == pytest.approx(0.0, abs=1e-4)
    assert row["n_reference_phases"] > 3 and row["coverage_gaps"] == "" and not row["flagged"]
    assert known_matches([("cand-NaCl", structure)], [SHIPPED_TABLE]) == {"cand-NaCl": nacl["id"]}


def test_an_uncovered_system_is_flagged_and_so_is_a_result_far_below_the_hull(tmp_path) -> None:
    config = MLIPHullConfig(cache_dir=tmp_path)
    references = hull_references(config, load_mlip(MLIPConfig()).version)
    # the splits hold He (and SiO2He) but no He-Pt phase, and Pt only in compounds
    helium_platinum = atoms_to_structure(bulk("HePt", "rocksalt", a=5.0))
    candidate = relax_items([("HePt", structure_to_json(helium_platinum))], config=SINGLE)
    row = (
        MLIPHull(references, ScreenSettings(relax=SINGLE, hull=config)).evaluate(candidate).iloc[0]
    )
    assert row["flagged"] and row["coverage_gaps"] == "Pt, He-Pt"
    assert "an ASE prototype stands in for Pt)" in row["flags"]

    # elemental references far too high (+5 eV/atom): NaCl lands far below them
    refs = read_references(_elements_file(tmp_path))
    high = {
        r.key: {"id": r.id, "formula": next(iter(r.elements)), "n_atoms": 1, "energy": 5.0,
                "status": "ok", "reason": "", "mlip_version": "x"}
        for r in refs
    }  # fmt: skip
    skewed = HullReferences(refs, known=high, method="single_point")
    salt = rocksalt(5.64, "Na", "Cl", primitive=True)
    candidate = relax_items([("NaCl", structure_to_json(salt))], config=SINGLE)
    row = MLIPHull(skewed, ScreenSettings(relax=SINGLE, hull=config)).evaluate(candidate).iloc[0]
    assert row["e_hull"] < -0.2 and "far below the known hull" in row["flags"]
    assert row["flagged"]


def _elements_file(tmp_path):
    """Two elemental phases (keys k-Na, k-Cl) as a records parquet."""
    na = atoms_to_structure(bulk("Na", "bcc", a=4.2))
    cl = atoms_to_structure(bulk("Cl", "sc", a=3.0))
    frame = pd.DataFrame(
        {"id": ["ref-Na", "ref-Cl"], "formula": ["Na", "Cl"],
         "structure": [structure_to_json(na), structure_to_json(cl)]}
    )  # fmt: skip
    path = tmp_path / "elements.parquet"
    frame.to_parquet(path)
    return path


def test_cli_hull_uses_the_shipped_table_without_a_reference(tmp_path, mp20_train_sample) -> None:
    frame = pd.read_csv(mp20_train_sample)
    frame[frame["material_id"] == "mp-829"].to_csv(tmp_path / "c.csv.gz", index=False)
    runner = CliRunner()
    relaxed = runner.invoke(
        app, ["relax", str(tmp_path / "c.csv.gz"), "--out", str(tmp_path / "r"), "--steps", "0",
              "--scheduler", "serial"]
    )  # fmt: skip
    assert relaxed.exit_code == 0, relaxed.output
    hull = runner.invoke(app, ["hull", str(tmp_path / "r"), "--out", str(tmp_path / "h")])
    assert hull.exit_code == 0, hull.output
    summary = HullSummary.read(tmp_path / "h" / HULL_SUMMARY)
    assert "every MP-20 / MPTS-52 phase" in summary.reference and summary.references["table"]
    row = pd.read_parquet(tmp_path / "h" / "hull.parquet").iloc[0]
    assert row["n_reference_phases"] > 0 and "flags" in row


def test_missing_table_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(HullError, match="hull-reference build"):
        hull_references(MLIPHullConfig(table=tmp_path / "none.parquet"), "chgnet")
