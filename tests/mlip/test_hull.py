"""The MLIP hull with known answers (real CHGNet, one MP-20 reference + ASE elemental refs)."""

from __future__ import annotations

import pandas as pd
import pytest
from ase.build import bulk
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.records import structure_to_json
from tasks.mlip.committee import committee_verdicts
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.mlip.hull import (
    HullError,
    HullReferences,
    MLIPHull,
    read_references,
)
from tasks.mlip.hull_stage import run_hull
from tasks.mlip.results import atoms_to_structure
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import MLIPHullConfig, RelaxConfig, ScreenSettings

ALPD = frozenset({"Al", "Pd"})


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hull-cache")


@pytest.fixture(scope="module")
def hull(alpd_reference, serial, cache) -> MLIPHull:
    return MLIPHull(
        HullReferences(read_references(alpd_reference), method="relaxed"),
        ScreenSettings(relax=serial, hull=MLIPHullConfig(cache_dir=cache)),
    )


@pytest.fixture(scope="module")
def alpd(alpd_reference):
    return read_references(alpd_reference)[0].structure()


@pytest.fixture(scope="module")
def evaluated(hull, alpd, serial) -> pd.DataFrame:
    expanded = alpd.copy()
    expanded.scale_lattice(alpd.volume * 1.3)
    al = atoms_to_structure(bulk("Al", "fcc", a=4.04))
    relaxed = relax_items(
        [("copy", structure_to_json(alpd)), ("al", structure_to_json(al))], config=serial
    )
    single = relax_items(
        [("expanded", structure_to_json(expanded))], config=serial.model_copy(update={"steps": 0})
    )
    broken = pd.DataFrame(
        [{"id": "broken", "status": "failed", "reason": "volume explosion", "formula": "AlPd"}]
    )
    return hull.evaluate(pd.concat([relaxed, single, broken], ignore_index=True)).set_index("id")


def test_reference_lies_on_its_own_hull(hull):
    diagram = hull.phase_diagram(ALPD)
    assert "mp-829" in {e.name for e in diagram.stable_entries}
    entry = next(e for e in diagram.all_entries if e.name == "mp-829")
    assert diagram.get_e_above_hull(entry) == pytest.approx(0.0, abs=1e-8)
    # the elemental prototypes are there and only the lowest of each element is stable
    elements = [e for e in diagram.stable_entries if len(e.composition.elements) == 1]
    assert sorted(e.composition.reduced_formula for e in elements) == ["Al", "Pd"]
    assert hull.stats["computed"] > 2 and hull.stats["failed"] == 0


def test_candidate_identical_to_a_reference_is_on_the_hull(evaluated):
    row = evaluated.loc["copy"]
    assert row["hull_status"] == "ok"
    assert row["e_hull"] == pytest.approx(0.0, abs=1e-6)
    assert not row["stable"] and row["metastable"]  # on the hull: the papers' E_hull < 0 fails
    assert row["e_form_per_atom"] < -0.3  # AlPd is strongly bound (DFT about -0.9 eV/atom)
    assert "mp-829" in row["decomposition"]


def test_high_energy_polymorph_lies_above(evaluated):
    row = evaluated.loc["expanded"]
    assert row["e_hull"] > 0.1
    assert not row["stable"] and not row["metastable"]
    assert row["candidate_single_point"] and not row["reference_single_point"]


def test_elements_are_never_stable_or_metastable(evaluated):
    row = evaluated.loc["al"]
    assert row["e_hull"] == pytest.approx(0.0, abs=1e-3)
    assert row["n_elements"] == 1 and not row["stable"] and not row["metastable"]


def test_failed_relaxation_is_reported_not_placed(evaluated):
    row = evaluated.loc["broken"]
    assert row["hull_status"] == "failed" and "volume explosion" in row["hull_reason"]


def test_second_run_reuses_the_disk_cache(alpd_reference, serial, cache, hull, evaluated):
    again = MLIPHull(
        HullReferences(read_references(alpd_reference), method="relaxed"),
        ScreenSettings(relax=serial, hull=MLIPHullConfig(cache_dir=cache)),
    )
    again.prepare([ALPD])
    assert again.stats == {"table": 0, "cached": hull.stats["computed"], "computed": 0, "failed": 0}
    entry = next(e for e in again.phase_diagram(ALPD).all_entries if e.name == "mp-829")
    first = next(e for e in hull.phase_diagram(ALPD).all_entries if e.name == "mp-829")
    assert entry.energy == first.energy


def test_candidates_from_another_mlip_are_refused(hull, evaluated):
    other = pd.DataFrame(
        [{"id": "x", "status": "ok", "formula": "AlPd", "mlip_version": "mace-0.3.16:x"}]
    )
    with pytest.raises(HullError, match="cannot share a hull"):
        hull.evaluate(other)


def test_cli_relax_then_hull(tmp_path, mp20_train_sample, alpd_reference, cache):
    frame = pd.read_csv(mp20_train_sample)
    frame[frame["material_id"] == "mp-829"].to_csv(tmp_path / "cands.csv.gz", index=False)
    runner = CliRunner()
    cands, out = str(tmp_path / "cands.csv.gz"), str(tmp_path / "r")
    relax = runner.invoke(
        app, ["relax", cands, "--out", out, "--scheduler", "serial", "--steps", "0"]
    )
    assert relax.exit_code == 0, relax.output
    hull = runner.invoke(app, ["hull", str(tmp_path / "r"), "--reference", alpd_reference,
                               "--out", str(tmp_path / "h"), "--cache-dir", str(cache),
                               "--single-point"])  # fmt: skip
    assert hull.exit_code == 0, hull.output
    assert "biased toward stability" in hull.output
    summary = HullSummary.read(tmp_path / "h" / HULL_SUMMARY)
    assert summary.reference_single_point and summary.candidate_single_point
    result = pd.read_parquet(tmp_path / "h" / "hull.parquet")
    # both single points of the same input: identical energies, so on the hull
    assert result.loc[0, "e_hull"] == pytest.approx(0.0, abs=1e-6)
    assert bool(result.loc[0, "reference_single_point"])
    ensemble = runner.invoke(
        app,
        ["hull-ensemble", str(tmp_path / "h"), "--out", str(tmp_path / "e"), "--min-agree", "1"],
    )
    assert ensemble.exit_code == 0, ensemble.output
    voted = pd.read_parquet(tmp_path / "e" / "ensemble.parquet").loc[0]
    assert bool(voted["metastable"]) and not bool(voted["stable"])  # on the hull, not below


def test_cli_reports_a_missing_model_clearly(tmp_path):
    result = CliRunner().invoke(app, ["relax", "x.csv", "--out", str(tmp_path), "--mlip", "mace",
                                      "--model", str(tmp_path / "missing.model")])  # fmt: skip
    assert result.exit_code == 1
    assert "missing.model" in result.output


def test_run_hull_flags_single_point_references(tmp_path, alpd_reference, alpd, serial, cache):
    relaxed = relax_items([("copy", structure_to_json(alpd))], config=serial)
    relaxed.to_parquet(tmp_path / "relaxed.parquet")
    config = MLIPHullConfig(
        reference=[alpd_reference], cache_dir=cache, single_point_references=True
    )  # the old flag, now energies: single_point
    assert config.energies == "single_point"
    path = run_hull(
        tmp_path / "relaxed.parquet", tmp_path / "h", ScreenSettings(relax=serial, hull=config)
    )
    row = pd.read_parquet(path).iloc[0]
    # a relaxed candidate against unrelaxed references: the bias the summary warns about
    assert row["reference_single_point"] and row["e_hull"] <= 1e-6
    assert "biased toward stability" in HullSummary.read(tmp_path / "h" / HULL_SUMMARY).warning


def test_unsupported_reference_file_is_a_clear_error(tmp_path):
    (tmp_path / "refs.txt").write_text("x")
    with pytest.raises(HullError, match="unrecognised structure set format"):
        read_references(tmp_path / "refs.txt")
    with pytest.raises(HullError, match="not found"):
        read_references(tmp_path / "none.parquet")


def test_single_point_mode_changes_the_cache_key(alpd_reference, cache):
    relaxed = MLIPHull(
        HullReferences(read_references(alpd_reference), method="relaxed"),
        ScreenSettings(hull=MLIPHullConfig(cache_dir=cache)),
    )
    single = MLIPHull(
        HullReferences(read_references(alpd_reference), method="single_point"),
        ScreenSettings(relax=RelaxConfig(), hull=MLIPHullConfig(cache_dir=cache)),
    )
    assert relaxed.cache_dir != single.cache_dir
    assert single.relax.single_point and not relaxed.relax.single_point


def test_the_committee_rule_requires_min_agreement_and_names_disagreements():
    def frame(e_hulls):
        return pd.DataFrame(
            {
                "id": ["a", "b"],
                "e_hull": e_hulls,
                "stable": [e <= 0 for e in e_hulls],
                "metastable": [e <= 0.1 for e in e_hulls],
                "hull_status": ["ok", "ok"],
            }
        )

    results = {"m1": frame([-0.01, 0.05]), "m2": frame([0.02, 0.06]), "m3": frame([-0.03, 0.3])}
    out = committee_verdicts(results, min_agree=2).set_index("id")
    assert out.loc["a", "stable_votes"] == 2 and out.loc["a", "stable"]
    assert out.loc["b", "metastable_votes"] == 2 and out.loc["b", "metastable"]
    assert not out.loc["b", "stable"]
    assert out.loc["a", "e_hull_mean"] == pytest.approx((-0.01 + 0.02 - 0.03) / 3)
    assert out.loc["a", "disagreement"] == (
        "committee disagrees: m1 E_hull -0.0100, m2 E_hull +0.0200, m3 E_hull -0.0300 eV/atom"
    )
    assert out.loc["b", "disagreement"].startswith("committee disagrees")  # 0.3: not metastable
    assert not committee_verdicts(results, min_agree=3).set_index("id").loc["a", "stable"]
    with pytest.raises(ValueError, match="min_agree"):
        committee_verdicts(results, min_agree=4)
    agreed = committee_verdicts({"m1": frame([-0.01, 0.05])}, 1).set_index("id")
    assert (agreed["disagreement"] == "").all()
