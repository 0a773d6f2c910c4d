"""DFT hull: MP2020 corrections, E_hull against references only, safe entry decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monty.json import MontyEncoder
from support.dft import ELEMENT_ENERGIES, reference_entry
from support.structures import rocksalt

from tasks.core.dft_results import DftResult, read_dft_results
from tasks.dft.collect import (
    apply_mp2020,
    decode_entries,
    dft_counts,
    e_above_hull,
    hull_results,
    mp_reference_entries,
    reference_entries,
    write_results,
)
from tasks.dft.settings import DftHullConfig


def test_counts_exclude_failed_and_rejected_from_checked() -> None:
    results = [
        DftResult(
            id=str(i), calc_id=str(i), formula="NaCl", dft_status="completed",
            e_hull_dft=-0.1 if i < 12 else 0.3, stable=i < 12, metastable=i < 12,
        )
        for i in range(100)
    ]  # fmt: skip
    results.append(DftResult(id="bad", calc_id="", formula="", dft_status="rejected"))
    results += [
        DftResult(id=f"f{i}", calc_id=f"f{i}", formula="NaCl", dft_status="failed")
        for i in range(5)
    ]
    counts = dft_counts(results)
    assert counts["n_checked"] == 100  # failed and rejected ones are not "checked, not stable"
    assert counts["n_failed"] == 5 and counts["n_sent"] == 105
    assert counts["n_stable"] == 12 and counts["n_metastable"] == 12


def test_mp2020_corrections_and_incompatible_entries() -> None:
    nacl = reference_entry("NaCl", -3.5, "nacl")
    kept, dropped = apply_mp2020([nacl])
    (corrected,) = kept
    assert any("anion correction (Cl)" in a.name for a in corrected.energy_adjustments)
    assert corrected.energy < nacl.energy  # the input entry itself is left alone
    assert nacl.correction == 0

    wrong = reference_entry("NaCl", -3.5, "wrong-potcar")
    wrong.parameters["potcar_spec"] = [{"titel": "PAW_PBE Na 01Jan2000"}, {"titel": "PAW_PBE Cl"}]
    kept, dropped = apply_mp2020([wrong])
    assert kept == [] and "wrong-potcar" in dropped


def test_e_hull_against_references_only() -> None:
    refs = [reference_entry(el, ELEMENT_ENERGIES[el], el) for el in ("Na", "Cl")]
    below = reference_entry("NaCl", -3.0, "cand")
    e_hull, decomposition = e_above_hull(below, refs)
    assert e_hull == pytest.approx(-3.0 - (ELEMENT_ENERGIES["Na"] + ELEMENT_ENERGIES["Cl"]) / 2)
    assert "Na" in decomposition and "Cl" in decomposition
    with pytest.raises(ValueError):
        e_above_hull(below, refs[:1])  # no Cl reference: no hull


def test_candidates_never_join_their_hull(tmp_path: Path) -> None:
    refs = [reference_entry(el, e, f"ref-{el}") for el, e in ELEMENT_ENERGIES.items()]
    entries_file = tmp_path / "refs.json"
    entries_file.write_text(json.dumps(refs, cls=MontyEncoder))
    # An earlier round found a deep NaCl phase; it is a reference now.
    deep = reference_entry("NaCl", -5.0, "old-calc")
    same = reference_entry("NaCl", -6.0, "this-calc")
    earlier = write_results(
        tmp_path / "earlier",
        [
            DftResult(id=i, calc_id=i, formula="NaCl", dft_status="completed", entry=e.as_dict())
            for i, e in (("old-calc", deep), ("this-calc", same))
        ],
        {},
    )
    config = DftHullConfig(entries_file=entries_file, earlier_results=[earlier])
    found = reference_entries(["Na", "Cl"], config, exclude_ids={"this-calc"})
    ids = {e.entry_id for e in found}
    assert "old-calc" in ids and "this-calc" not in ids and "ref-Li" not in ids

    from pymatgen.entries.computed_entries import ComputedStructureEntry

    cand = ComputedStructureEntry(
        rocksalt(5.69, "Na", "Cl", primitive=True),
        -7.0,
        parameters=dict(deep.parameters),
        entry_id="this-calc",
    )
    row = DftResult(id="c", calc_id="this-calc", formula="NaCl", dft_status="completed")
    row.n_elements = 2
    (res,) = hull_results([row], {"this-calc": cand}, config, {"this-calc": True})
    # Judged against the deep earlier phase (corrected), not against itself.
    assert res.e_hull_dft is not None and res.e_hull_dft > 0
    assert not res.stable


def test_mp_cache_is_read_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MP_API_KEY", raising=False)
    cached = [reference_entry("Na", -1.31, "mp-127"), reference_entry("NaCl", -3.4, "mp-22862")]
    (tmp_path / "Cl-Na.json").write_text(json.dumps(cached, cls=MontyEncoder))
    assert {e.entry_id for e in mp_reference_entries(["Na", "Cl"], tmp_path)} == {
        "mp-127",
        "mp-22862",
    }
    assert mp_reference_entries(["Li", "F"], tmp_path) == []  # offline and not cached


def test_entries_file_naming_another_module_is_refused(tmp_path: Path) -> None:
    good = reference_entry("NaCl", -3.4, "mp-22862").as_dict()
    assert [e.entry_id for e in decode_entries(json.dumps([good]), "ok.json")] == ["mp-22862"]
    evil = dict(good, **{"@module": "os", "@class": "system"})
    with pytest.raises(ValueError, match="refusing to decode @module 'os'"):
        decode_entries(json.dumps([evil]), "evil.json")
    nested = dict(good, data={"x": {"@module": "subprocess", "@class": "Popen"}})
    with pytest.raises(ValueError, match="subprocess"):
        decode_entries(json.dumps([nested]), "nested.json")


def test_dft_results_are_read_back_typed_and_a_foreign_file_is_refused(tmp_path) -> None:
    """``dft_results.json`` goes to later rounds and the MLIP fine-tuning as typed rows."""
    entry = reference_entry("NaCl", -3.5, "nacl").as_dict()
    results = [
        DftResult(id="a", calc_id="c-a", formula="NaCl", dft_status="completed", entry=entry),
        DftResult(id="b", calc_id="", formula="", dft_status="rejected", reason="bad input"),
    ]
    path = write_results(tmp_path, results, {})
    back = read_dft_results(path)
    assert [(r.id, r.dft_status, r.reason) for r in back] == [
        ("a", "completed", ""),
        ("b", "rejected", "bad input"),
    ]
    assert back[0].entry is not None and back[0].entry["energy"] == entry["energy"]
    path.write_text(json.dumps([{"id": "a", "status": "completed"}]))
    with pytest.raises(ValueError, match=r"row 0 .*calc_id.*status"):
        read_dft_results(path)
