"""Relaxation with real CHGNet: convergence, symmetry, robustness, chunked resumable output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from tasks.core.records import structure_from_json, structure_to_json
from tasks.mlip.ase_engine import relax_structure
from tasks.mlip.backends import load_mlip
from tasks.mlip.documents import RELAX_META, RelaxMeta
from tasks.mlip.results import atoms_to_structure, displacement_rmsd
from tasks.mlip.runner import relax_items, run_relax
from tasks.mlip.settings import RelaxConfig


@pytest.fixture(scope="module")
def chgnet():
    return load_mlip().calculator()


class BrokenModel(Calculator):
    """Stands in for a model that returns NaN (or raises) on some input."""

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.fail == "raise":
            raise RuntimeError("model exploded")
        n = len(self.atoms)
        self.results = {"energy": np.nan, "forces": np.zeros((n, 3)), "stress": np.zeros(6)}


def test_relaxation_lowers_energy_and_reports_everything(nacl, chgnet):
    atoms = bulk("NaCl", "rocksalt", a=5.64 * 0.97)
    atoms.rattle(0.1, seed=0)
    rattled = atoms_to_structure(atoms)
    single = relax_structure(rattled, chgnet, RelaxConfig(steps=0))
    relaxed = relax_structure(rattled, chgnet, RelaxConfig(), "nacl")
    assert single.single_point and single.steps == 0
    assert relaxed.status == "ok" and relaxed.converged and relaxed.fmax < 0.05
    assert 0 < relaxed.steps < 300
    assert relaxed.energy < single.energy - 0.01
    assert relaxed.energy_per_atom == pytest.approx(relaxed.energy / 2)
    assert relaxed.volume_ratio > 1.0  # the 3% compressed cell expands
    assert relaxed.rmsd > 0.01
    final = structure_from_json(relaxed.structure)
    assert displacement_rmsd(rattled, final) == pytest.approx(relaxed.rmsd)


def test_rmsd_ignores_translation_and_strain(nacl):
    moved = nacl.copy()
    moved.translate_sites(range(len(moved)), [0.1, 0.2, 0.3])
    moved.scale_lattice(nacl.volume * 1.2)
    assert displacement_rmsd(nacl, moved) == pytest.approx(0.0, abs=1e-9)


def test_fix_symmetry_keeps_the_space_group(chgnet):
    atoms = bulk("NaCl", "rocksalt", a=5.5, cubic=True)
    atoms.rattle(0.003, seed=1)
    structure = atoms_to_structure(atoms)
    assert SpacegroupAnalyzer(structure, symprec=0.05).get_space_group_number() == 225
    assert SpacegroupAnalyzer(structure, symprec=1e-4).get_space_group_number() != 225
    kept = relax_structure(structure, chgnet, RelaxConfig(fix_symmetry=True, symprec=0.05))
    free = relax_structure(structure, chgnet, RelaxConfig())
    assert kept.status == "ok" and kept.converged

    def tight(result):
        return SpacegroupAnalyzer(structure_from_json(result.structure), symprec=1e-4)

    assert tight(kept).get_space_group_number() == 225
    assert tight(free).get_space_group_number() != 225


@pytest.mark.parametrize(
    ("scale", "config", "reason"),
    [
        (0.97, RelaxConfig(max_volume_ratio=1.01), "volume explosion"),
        (1.10, RelaxConfig(min_volume_ratio=0.99), "volume collapse"),
        (0.97, RelaxConfig(time_budget_s=1e-6), "time budget"),
        # Na-Cl starts at 2.99 Å and CHGNet pulls it toward ~2.8 Å
        (1.06, RelaxConfig(min_distance=2.9), "overlapping atoms"),
    ],
)
def test_runaway_relaxations_are_stopped_with_a_reason(chgnet, scale, config, reason):
    structure = atoms_to_structure(bulk("NaCl", "rocksalt", a=5.64 * scale))
    result = relax_structure(structure, chgnet, config)
    assert result.status == "failed"
    assert reason in result.reason
    assert np.isnan(result.energy)
    assert result.structure  # the last geometry is kept for diagnosis


@pytest.mark.parametrize(("fail", "reason"), [("nan", "non-finite"), ("raise", "model exploded")])
def test_broken_model_output_is_a_failed_status_not_a_crash(nacl, fail, reason):
    result = relax_structure(nacl, BrokenModel(fail), RelaxConfig())
    assert result.status == "failed" and reason in result.reason


def test_overlapping_input_is_rejected(chgnet):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.positions[1] = atoms.positions[0] + [0.2, 0, 0]
    result = relax_structure(atoms_to_structure(atoms), chgnet, RelaxConfig())
    assert result.status == "rejected" and "overlapping atoms" in result.reason


def test_bad_items_do_not_stop_the_batch(nacl, serial):
    items = [("bad", "{not json"), ("nacl", structure_to_json(nacl))]
    frame = relax_items(items, config=serial.model_copy(update={"steps": 5}))
    assert list(frame["id"]) == ["bad", "nacl"]
    assert list(frame["status"]) == ["rejected", "ok"]
    assert frame.loc[1, "mlip_version"].startswith("chgnet-")


def _candidate_csv(path, mp20_train_sample):
    frame = pd.read_csv(mp20_train_sample)
    small = frame[frame["material_id"].isin(["mp-829", "mp-1216519"])].copy()
    broken = pd.DataFrame([{"material_id": "broken", "pretty_formula": "X", "cif": "garbage"}])
    pd.concat([small, broken]).to_csv(path, index=False)


def test_run_relax_writes_chunks_and_resumes(tmp_path, mp20_train_sample, serial):
    candidates = tmp_path / "candidates.csv.gz"
    _candidate_csv(candidates, mp20_train_sample)
    config = serial.model_copy(update={"chunk_size": 1, "steps": 20})
    out = tmp_path / "relax"
    table = pd.read_parquet(run_relax(candidates, out, config=config))
    assert sorted(table["id"]) == ["broken", "mp-1216519", "mp-829"]
    assert table.set_index("id").loc["broken", "status"] == "rejected"
    chunks = sorted((out / "chunks").glob("*/chunk-*.parquet"))
    assert len(chunks) == 2
    from ase.io import read

    frames = read(out / "relaxed.extxyz", index=":")
    assert sorted(a.info["id"] for a in frames) == ["mp-1216519", "mp-829"]

    chunks[0].unlink()  # as if the process died before this chunk finished
    kept_mtime = chunks[1].stat().st_mtime_ns
    rerun = pd.read_parquet(run_relax(candidates, out, config=config))
    meta = RelaxMeta.read(out / RELAX_META)
    assert meta.n_relaxed_this_run == 1
    assert chunks[1].stat().st_mtime_ns == kept_mtime
    pd.testing.assert_frame_equal(
        rerun.drop(columns="wall_s"), table.drop(columns="wall_s"), check_exact=False
    )


@pytest.mark.parametrize("scheduler", ["process", pytest.param("dask", marks=pytest.mark.slow)])
def test_parallel_paths_match_the_serial_loop(nacl, serial, scheduler):
    items = [
        ("nacl", structure_to_json(nacl)),
        ("si", structure_to_json(atoms_to_structure(bulk("Si", "diamond", a=5.5)))),
    ]
    base = serial.model_copy(update={"chunk_size": 1, "steps": 10})
    reference = relax_items(items, config=base)
    parallel = relax_items(
        items, config=base.model_copy(update={"scheduler": scheduler, "n_workers": 2})
    )
    assert list(parallel["id"]) == ["nacl", "si"]
    assert list(parallel["status"]) == ["ok", "ok"]
    np.testing.assert_allclose(parallel["energy"], reference["energy"], rtol=0, atol=1e-5)


def test_disordered_input_is_rejected_not_crashing(nacl, chgnet):
    disordered = nacl.copy()
    disordered.replace(0, {"Na": 0.5, "K": 0.5})
    result = relax_structure(disordered, chgnet, RelaxConfig())
    assert result.status == "rejected" and "partial occupancy" in result.reason


def test_unphysically_dense_input_is_rejected_before_the_model(chgnet):
    # 0.62 Å simple-cubic hydrogen: ~150 neighbours per atom would blow up the MLIP graph
    dense = atoms_to_structure(bulk("H", "sc", a=0.62))
    result = relax_structure(dense, chgnet, RelaxConfig())
    assert result.status == "rejected" and "unphysically dense" in result.reason


def test_unphysically_low_energy_stops_a_relaxation() -> None:
    """A potential that runs away to -293 eV/atom is stopped, not counted as stable."""
    from tasks.mlip.guards import MIN_ENERGY_PER_ATOM, RelaxStopError, check_progress
    from tasks.mlip.settings import RelaxConfig

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    forces = np.zeros((len(atoms), 3))
    v0, config = atoms.get_volume(), RelaxConfig()
    check_progress(atoms, -4.0 * len(atoms), forces, v0, config, None)
    with pytest.raises(RelaxStopError, match="unphysical energy"):
        check_progress(atoms, (MIN_ENERGY_PER_ATOM - 1) * len(atoms), forces, v0, config, None)
