"""One stability rule for both hulls: the papers' strict inequalities, decided at E_hull = 0."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.entries.computed_entries import ComputedStructureEntry
from support.dft import reference_entry
from support.structures import rocksalt

from tasks.core.records import structure_to_json
from tasks.core.stability import HULL_TOLERANCE, StabilityRule
from tasks.dft.collect import DftResult, hull_results
from tasks.dft.settings import DftHullConfig
from tasks.mlip.hull import HullReferences, MLIPHull, Reference
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import MLIPHullConfig, RelaxConfig, ScreenSettings


def test_strict_thresholds_and_element_count() -> None:
    rule = StabilityRule()
    assert rule.classify(-0.01, 2) == (True, True)
    assert rule.classify(0.0, 2) == (False, True)  # on the hull: metastable, not stable
    assert rule.classify(-HULL_TOLERANCE / 2, 2) == (False, True)  # solver noise is "on it"
    assert rule.classify(0.05, 3) == (False, True)
    assert rule.classify(0.1, 2) == (False, False)
    assert rule.classify(-0.5, 1) == (False, False)  # an element is never a "new" stable phase
    assert rule.classify(float("nan"), 2) == (False, False)
    with pytest.raises(ValueError):
        StabilityRule(stable_below=0.2, metastable_below=0.1)


def test_mlip_and_dft_hulls_agree_on_a_crystal_exactly_on_the_hull(tmp_path) -> None:
    """A candidate that *is* a reference phase has E_hull = 0 on both paths: metastable only."""
    nacl = rocksalt(5.64, "Na", "Cl", primitive=True)
    na = rocksalt(4.23, "Na", "Na", primitive=True).copy()
    na.remove_sites([1])  # one Na atom in an fcc cell
    cl = rocksalt(3.2, "Cl", "Cl", primitive=True).copy()
    cl.remove_sites([1])
    single_point = RelaxConfig(steps=0, scheduler="serial")
    references = [
        Reference(ident, frozenset(s.composition.as_dict()), key, structure_to_json(s), "json")
        for ident, key, s in (
            ("ref-NaCl", "k-nacl", nacl),
            ("ref-Na", "k-na", na),
            ("ref-Cl", "k-cl", cl),
        )
    ]
    hull = MLIPHull(
        HullReferences(references, method="single_point"),
        ScreenSettings(
            relax=single_point,
            hull=MLIPHullConfig(cache_dir=tmp_path, elemental_prototypes=False),
            stability=StabilityRule(),
        ),
    )
    candidate = relax_items([("cand-NaCl", structure_to_json(nacl))], config=single_point)
    mlip_row = hull.evaluate(pd.DataFrame(candidate)).iloc[0]
    # the same CHGNet energy twice, but CHGNet computes in float32: one ulp at ~4 eV/atom
    # (4.8e-7 seen when the batch composition differs) is all the difference allowed
    assert mlip_row["e_hull"] == pytest.approx(0.0, abs=1e-6)

    energies = {"Na": -1.31, "Cl": -1.84, "NaCl": -3.5}
    refs = [reference_entry(f, e, f"ref-{f}") for f, e in energies.items()]
    entries_file = tmp_path / "refs.json"
    entries_file.write_text("[" + ",".join(r.to_json() for r in refs) + "]")
    config = DftHullConfig(
        entries_file=entries_file, correct_references=False, correct_candidates=False
    )
    computed = ComputedStructureEntry(
        nacl, -3.5 * len(nacl), parameters=refs[2].parameters, entry_id="c"
    )
    row = DftResult(
        id="cand-NaCl", calc_id="c", formula="NaCl", dft_status="completed", n_elements=2
    )
    (dft_row,) = hull_results([row], {"c": computed}, config, {"c": True}, StabilityRule())
    assert dft_row.e_hull_dft == pytest.approx(0.0, abs=1e-9)

    assert (bool(mlip_row["stable"]), bool(mlip_row["metastable"])) == (False, True)
    assert (dft_row.stable, dft_row.metastable) == (False, True)
