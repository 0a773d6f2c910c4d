"""MLIP fine-tuning between rounds: real CHGNet learns shifted DFT energies, gets a new version,
and the round it screens computes its whole hull with that version."""

from __future__ import annotations

import json

import pytest
from ase.build import bulk
from pymatgen.entries.computed_entries import ComputedStructureEntry

from tasks.core.config import ConfigError
from tasks.dft.collect import DftResult, write_results
from tasks.mlip.backends import load_mlip
from tasks.mlip.finetune import (
    RECORD,
    check_finetunable,
    dft_training_points,
    finetune_mlip,
    finetuned_screen,
)
from tasks.mlip.hull import hull_references
from tasks.mlip.reference_table import TableMismatchError
from tasks.mlip.results import atoms_to_structure
from tasks.mlip.settings import MLIPConfig, MLIPHullConfig, ScreenSettings

#: How far the "DFT" energies sit above the base CHGNet's (eV/atom).
SHIFT = 0.15


@pytest.fixture(scope="module")
def dft_results(tmp_path_factory):
    """A ``dft_results.json`` with three completed calculations (CHGNet + SHIFT) and a failure."""
    structures = [
        atoms_to_structure(bulk("NaCl", "rocksalt", a=5.64)),
        atoms_to_structure(bulk("Si", "diamond", a=5.43)),
        atoms_to_structure(bulk("MgO", "rocksalt", a=4.21)),
    ]
    base = load_mlip(MLIPConfig())
    energies = base.energies(base.calculator(), structures)
    results = [
        DftResult(
            id=f"cand-{k}",
            calc_id=f"calc-{k}",
            formula=s.composition.reduced_formula,
            dft_status="completed",
            entry=ComputedStructureEntry(s, e + SHIFT * len(s), entry_id=f"calc-{k}").as_dict(),
        )
        for k, (s, e) in enumerate(zip(structures, energies, strict=True))
    ]
    results.append(DftResult(id="cand-x", calc_id="calc-x", formula="Fe", dft_status="failed"))
    return write_results(tmp_path_factory.mktemp("dft"), results, {})


def test_training_points_are_the_completed_calculations_once_each(dft_results) -> None:
    points = dft_training_points([dft_results, dft_results])
    assert [p.id for p in points] == ["cand-0", "cand-1", "cand-2"]
    assert points[1].structure.composition.reduced_formula == "Si"


def test_finetuned_mlip_learns_the_results_and_screens_with_its_own_hull(
    dft_results, tmp_path
) -> None:
    base = MLIPConfig()
    points = dft_training_points([dft_results])
    checkpoint = finetune_mlip(points, base, tmp_path / "mlip", epochs=30, lr=3e-3, seed=0)
    record = json.loads((tmp_path / "mlip" / RECORD).read_text())
    assert record["ids"] == ["cand-0", "cand-1", "cand-2"]
    mae = record["train_mae_ev_per_atom"]
    assert mae["before"] == pytest.approx(SHIFT, abs=0.01)
    assert mae["after"] < 0.5 * mae["before"], mae

    screen = finetuned_screen(ScreenSettings(mlip=base), checkpoint)
    tuned, hull = load_mlip(screen.mlip), screen.hull
    assert tuned.version == record["version"] != load_mlip(base).version == record["base"]
    # the shipped table (base CHGNet) is refused for the new version; the round's hull
    # computes every reference with it, the way the table was computed (single points)
    with pytest.raises(TableMismatchError):
        hull_references(MLIPHullConfig(), tuned.version)
    assert hull.energies == "single_point"
    references = hull_references(hull, tuned.version)
    assert references.references and not references.known
    assert tuned.version in references.description

    # a resumed run reuses the checkpoint instead of training again
    stamp = checkpoint.stat().st_mtime_ns
    again = finetune_mlip(points, base, tmp_path / "mlip", epochs=30, lr=3e-3, seed=0)
    assert again == checkpoint and checkpoint.stat().st_mtime_ns == stamp


def test_only_chgnet_is_finetuned() -> None:
    check_finetunable(MLIPConfig())
    with pytest.raises(ConfigError, match=r"loop\.mlip_finetune"):
        check_finetunable(MLIPConfig(name="mace", model="medium"))
