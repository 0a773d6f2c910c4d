"""SevenNet from the wheel's own checkpoints, in its package layer's worker (offline).

The layer (``.venv/layers/sevennet``, ``infra/layers/sevennet.txt``) is installed by
``make setup``; without it these tests skip with the reason.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distributions, version

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from packaging.requirements import Requirement
from pymatgen.core import Structure

from tasks.core.columns import Col
from tasks.core.records import STATUS_OK, structure_to_json
from tasks.core.structure_io import parse_payload
from tasks.mlip.ase_engine import relax_structure
from tasks.mlip.backends import SEVENNET_SHIPPED, MLIPUnavailableError, load_mlip
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.mlip.hull import MLIPHull, hull_references
from tasks.mlip.hull_stage import run_hull
from tasks.mlip.reference_table import SHIPPED_TABLE, TableMismatchError, load_table
from tasks.mlip.results import atoms_to_structure
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import (
    CommitteeConfig,
    CommitteeMember,
    MLIPConfig,
    MLIPHullConfig,
    RelaxConfig,
    ScreenSettings,
)
from tasks.mlip.worker import layer_path

SEVENNET = MLIPConfig(name="sevennet")
LAYER = layer_path("sevennet")
pytestmark = pytest.mark.skipif(
    not (LAYER / "sevenn").is_dir(), reason=f"no sevennet layer at {LAYER} (run `make setup`)"
)


@pytest.fixture(scope="module")
def backend_and_calculator():
    backend = load_mlip(SEVENNET)
    calculator = backend.calculator()
    yield backend, calculator
    calculator.close()


def test_the_layer_holds_what_sevenn_needs_beside_the_main_environment() -> None:
    """The layer's own ``pip check``: every requirement of the layer's packages is met by the
    layer or by the main environment (which keeps e3nn 0.4.4 for mace-torch)."""
    layer = {d.name.lower().replace("_", "-"): d for d in distributions(path=[str(LAYER)])}
    assert {"sevenn", "e3nn"} <= set(layer)
    assert version("e3nn") == "0.4.4" and layer["e3nn"].version == "0.6.0"
    unmet = []
    for dist in layer.values():
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = requirement.name.lower().replace("_", "-")
            try:
                found = layer[name].version if name in layer else version(requirement.name)
            except PackageNotFoundError:
                unmet.append(f"{dist.name}: {text} (missing)")
                continue
            if not requirement.specifier.contains(found, prereleases=True):
                unmet.append(f"{dist.name}: {text} (found {found})")
    assert not unmet, unmet


def test_sevennet_loads_offline_from_the_wheel(backend_and_calculator) -> None:
    """7net-0 from the pinned wheel: its version, 89 elements, and Si's energy as computed
    in a separate e3nn 0.6 environment (-10.80166 eV for the 2-atom diamond cell)."""
    backend, calculator = backend_and_calculator
    assert backend.version == "sevenn-0.13.0:7net-0"
    elements = backend.supported_elements(calculator)
    assert len(elements) == 89 and {"H", "Si", "Pu"} <= elements
    silicon = atoms_to_structure(bulk("Si", "diamond", a=5.43))
    (energy,) = backend.energies(calculator, [silicon])
    assert energy == pytest.approx(-10.80166, abs=1e-4)


def test_energy_only_single_points_equal_the_full_models_energies(
    backend_and_calculator, mp20_test_sample
) -> None:
    """Single points skip the force and stress head (three times cheaper) and give the energy
    the full model gives with forces; a geometry the model cannot take is NaN, alone."""
    backend, calculator = backend_and_calculator
    entries = pd.read_csv(mp20_test_sample).head(6)
    structures = [Structure.from_str(text, fmt="cif") for text in entries["cif"]]
    full = []
    for structure in structures:
        atoms = structure.to_ase_atoms()
        atoms.calc = calculator
        full.append(atoms.get_potential_energy())
        assert np.abs(atoms.get_forces()).max() > 0 or len(atoms) == 1
    broken = structures[0].copy()
    broken.lattice = broken.lattice.__class__(np.zeros((3, 3)))
    energies = backend.energies(calculator, [*structures, broken])
    np.testing.assert_allclose(energies[:-1], full, atol=1e-4)
    assert np.isnan(energies[-1])


def test_a_relaxation_runs_through_the_worker(backend_and_calculator, nacl: Structure) -> None:
    """Forces and stress come back from the worker: compressed NaCl relaxes and expands."""
    backend, calculator = backend_and_calculator
    result = relax_structure(nacl, calculator, RelaxConfig(), "nacl", backend)
    assert result.status == STATUS_OK and result.converged, result.reason
    assert result.volume_ratio > 1.02 and np.isfinite(result.energy)


def test_a_known_binary_lands_on_sevennets_shipped_hull() -> None:
    """Rock-salt NaCl (mp-22862, a phase of the papers' hull) at E_hull ≈ 0 on SevenNet's own
    hull, whose energies come from SevenNet's shipped table (the default for its version)."""
    table = load_table(SHIPPED_TABLE).frame
    row = table[table["id"] == "mp-22862"].iloc[0]
    items = [("nacl", structure_to_json(parse_payload(row["crystal"], "compact")))]
    single = RelaxConfig(scheduler="serial", steps=0)
    candidates = relax_items(items, SEVENNET, single)
    screen = ScreenSettings(mlip=SEVENNET, relax=single, hull=MLIPHullConfig(energies="auto"))
    references = hull_references(screen.hull, load_mlip(SEVENNET).version)
    assert "sevenn-0.13.0:7net-0 single points" in references.description
    hull = MLIPHull(references, screen)
    frame = hull.evaluate(candidates)
    assert hull.stats["computed"] == 0  # every Na-Cl phase from the table
    assert frame[Col.HULL_STATUS].tolist() == [STATUS_OK], frame[Col.HULL_REASON].tolist()
    assert abs(float(frame[Col.E_HULL].iloc[0])) < 0.02


def test_a_sevennet_hull_refuses_chgnets_table() -> None:
    version = load_mlip(SEVENNET).version
    with pytest.raises(TableMismatchError, match=r"chgnet-0.4.2:0.3.0 energies.*sevenn-0.13.0"):
        hull_references(MLIPHullConfig(energies="table", table=SHIPPED_TABLE), version)


def test_unknown_or_tampered_checkpoints_are_refused(tmp_path, monkeypatch) -> None:
    with pytest.raises(MLIPUnavailableError, match="neither a shipped checkpoint"):
        load_mlip(MLIPConfig(name="sevennet", model="7net-9"))
    fake = tmp_path / "sevennet" / SEVENNET_SHIPPED["7net-0"][0]
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the shipped checkpoint")
    monkeypatch.setenv("DISCOVERY_MLIP_LAYERS", str(tmp_path))
    with pytest.raises(MLIPUnavailableError, match="sha256 differs"):
        load_mlip(SEVENNET)


def test_a_committee_stage_votes_flags_disagreements_and_keeps_each_members_hull(
    tmp_path, mp20_test_sample
) -> None:
    """CHGNet relaxes, SevenNet judges at CHGNet's geometry on its own hull; the hull stage's
    rows carry both verdicts, the committee's is their AND, and every split is flagged."""
    frame = pd.read_csv(mp20_test_sample).head(6)
    items = [
        (row.material_id, structure_to_json(Structure.from_str(row.cif, fmt="cif")))
        for row in frame.itertuples()
    ]
    serial = RelaxConfig(scheduler="serial", steps=60)
    relax_items(items, config=serial).to_parquet(tmp_path / "relaxed.parquet")
    hull = MLIPHullConfig(energies="single_point", cache_dir=tmp_path / "cache")
    screen = ScreenSettings(
        relax=serial,
        hull=hull,
        committee=CommitteeConfig(members=[CommitteeMember(mlip=SEVENNET, hull=hull.model_copy())]),
    )
    rows = pd.read_parquet(run_hull(tmp_path / "relaxed.parquet", tmp_path / "hull", screen))
    assert (
        len(rows) == 6 and (tmp_path / "hull" / "members" / "sevennet" / "hull.parquet").is_file()
    )
    cautious = rows[["e_hull_chgnet", "e_hull_sevennet"]].max(axis=1)
    assert np.allclose(rows["e_hull_committee"], cautious, equal_nan=True)
    for kind in ("stable", "metastable"):
        both = rows[f"{kind}_chgnet"] & rows[f"{kind}_sevennet"]
        assert rows[kind].tolist() == both.tolist()
    split = (rows["stable_chgnet"] != rows["stable_sevennet"]) | (
        rows["metastable_chgnet"] != rows["metastable_sevennet"]
    )
    assert split.any()  # these known phases sit within meV of both hulls: the members split
    disagreeing = rows["flags"].str.contains("committee disagrees: chgnet E_hull")
    assert disagreeing.tolist() == split.tolist()
    assert not rows.loc[split, "stable"].any() and rows.loc[split, "flagged"].all()
    summary = HullSummary.read(tmp_path / "hull" / HULL_SUMMARY)
    assert summary.committee is not None
    assert [m.label for m in summary.committee.members] == ["chgnet", "sevennet"]
    assert summary.committee.min_agree == 2 and summary.n_stable == int(rows["stable"].sum())
    assert "F1 0.613, precision 0.514" in summary.committee.describe()
