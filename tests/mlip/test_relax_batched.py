"""Batched relaxation (torch-sim, MACE) against the one-by-one ASE FIRE loop, on CPU.

The model is a small random MACE (Na, Cl; interaction energies scaled up and ZBL pair
repulsion on, so rattled rock-salt cells take 18-40 FIRE steps to relax), saved to a local
``.model`` file and loaded through :mod:`tasks.mlip.backends` by both paths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.build import bulk
from pydantic import ValidationError
from support.mace import tiny_mace
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.records import structure_to_json
from tasks.mlip.backends import sha256_file
from tasks.mlip.batched_engine import relax_chunk_batched
from tasks.mlip.documents import RELAX_META, RelaxMeta
from tasks.mlip.results import atoms_to_structure
from tasks.mlip.runner import relax_items, run_relax
from tasks.mlip.settings import MLIPConfig, RelaxConfig

#: Rattled (0.1 Å) Na-Cl cells that relax in 18-40 steps under the test model.
RELAXING = {
    "rs-5.3": ("rocksalt", 5.3, (1, 1, 1)),
    "rs-5.8x2": ("rocksalt", 5.8, (2, 1, 1)),
    "rs-6.2": ("rocksalt", 6.2, (1, 1, 1)),
    "rs-5.6x4": ("rocksalt", 5.6, (1, 2, 2)),
}
#: Rattled (0.05 Å) cells for the robustness cases: volume ratio and nearest-neighbour
#: distance before -> after relaxing under the test model, measured once.
MIXED = {
    "rs-4.6": ("rocksalt", 4.6, (1, 1, 1)),  # V/V0 0.93, d 2.20 -> 2.24 Å
    "cs-3.0": ("cesiumchloride", 3.0, (1, 1, 1)),  # V/V0 0.76, d 2.43 -> 2.36 Å
    "rs-7.0": ("rocksalt", 7.0, (1, 1, 1)),  # V/V0 1.12, d 3.40 -> 3.55 Å
    "rs-5.8x2": ("rocksalt", 5.8, (2, 1, 1)),  # V/V0 0.47, d 2.72 -> 2.23 Å
    "rs-6.2": ("rocksalt", 6.2, (1, 1, 1)),  # V/V0 0.38, d 3.05 -> 2.23 Å
}


def _items(specs: dict[str, tuple[str, float, tuple[int, int, int]]], rattle: float):
    items = []
    for seed, (name, (kind, a, repeat)) in enumerate(specs.items()):
        atoms = bulk("NaCl", kind, a=a).repeat(repeat)
        atoms.rattle(rattle, seed=seed)
        items.append((name, structure_to_json(atoms_to_structure(atoms))))
    return items


def _json(atoms: Atoms) -> str:
    return structure_to_json(atoms_to_structure(atoms))


@pytest.fixture(scope="module")
def mace(tmp_path_factory) -> MLIPConfig:
    path = tmp_path_factory.mktemp("mace") / "tiny-nacl.model"
    tiny_mace(path, inter_scale=10.0, pair_repulsion=True)
    return MLIPConfig(name="mace", model=str(path), model_sha256=sha256_file(path))


@pytest.fixture(scope="module")
def relaxing() -> list[tuple[str, str]]:
    return _items(RELAXING, rattle=0.1)


@pytest.fixture(scope="module")
def loop_results(mace, relaxing) -> pd.DataFrame:
    """The reference: the one-by-one ASE FIRE loop with the same model and settings."""
    return relax_items(relaxing, mace, RelaxConfig(scheduler="serial"))


def _batched(config: RelaxConfig) -> RelaxConfig:
    return config.model_copy(update={"engine": "batched", "chunk_size": 16})


def test_batched_relaxation_matches_the_ase_loop(mace, relaxing, loop_results):
    batched = relax_items(relaxing, mace, _batched(RelaxConfig()))
    loop = loop_results
    assert list(batched["id"]) == list(RELAXING)
    assert (loop["status"] == "ok").all() and (batched["status"] == "ok").all()
    assert (loop["steps"] >= 15).all()  # real relaxations, not converged at the start
    assert list(batched["converged"]) == list(loop["converged"]) == [True] * len(RELAXING)
    assert (batched["fmax"] < 0.05).all()
    # Both paths run the same FIRE on the same Fréchet cell filter, identical to machine
    # precision until torch-sim starts decaying FIRE's mixing parameter (it does so before
    # mixing, ASE after: from the 8th step on). Both then stop somewhere with all filter
    # forces < 0.05 eV/Å around the same minimum: measured differences are < 2e-5 eV/atom,
    # 1e-3 eV/atom leaves margin and is still far below the ~0.3 eV/atom relaxation energy
    # and the differences between these cells, so a wrong stress, cell force or energy fails.
    np.testing.assert_allclose(batched["energy_per_atom"], loop["energy_per_atom"], atol=1e-3)
    np.testing.assert_allclose(batched["volume_ratio"], loop["volume_ratio"], atol=5e-3)
    np.testing.assert_allclose(batched["rmsd"], loop["rmsd"], atol=5e-3)
    np.testing.assert_allclose(batched["energy"], batched["energy_per_atom"] * batched["n_atoms"])
    # each candidate leaves with its own step count (converged candidates leave the batch)
    assert batched["steps"].nunique() > 1
    np.testing.assert_allclose(batched["steps"], loop["steps"], atol=3)
    assert (batched["mlip_version"] == loop["mlip_version"]).all()
    assert batched["mlip_version"].iloc[0].startswith("mace-0.3.16:tiny-nacl.model@")


def test_step_limited_batch_follows_the_ase_trajectory_exactly(mace, relaxing):
    # 5 steps: before the mixing-parameter ordering differs, so the same trajectory
    config = RelaxConfig(scheduler="serial", steps=5)
    loop = relax_items(relaxing, mace, config)
    batched = relax_items(relaxing, mace, _batched(config))
    assert list(batched["steps"]) == list(loop["steps"]) == [5] * len(RELAXING)
    assert not batched["converged"].any() and not loop["converged"].any()
    np.testing.assert_allclose(batched["energy"], loop["energy"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(batched["fmax"], loop["fmax"], rtol=0, atol=1e-8)
    single = relax_items(relaxing, mace, _batched(config.model_copy(update={"steps": 0})))
    assert single["single_point"].all() and (single["steps"] == 0).all()
    assert (single["energy"] > batched["energy"]).all()


def test_a_new_batch_with_the_same_atomic_numbers_is_reindexed(mace):
    # [Na Cl] + [Na Cl] and then one [Na Cl Na Cl] cell: the same atomic-number sequence
    # (torch-sim's MACE wrapper would keep the first batch's system layout)
    pairs = [(f"pair-{k}", _json(bulk("NaCl", "rocksalt", a=5.6 + 0.1 * k))) for k in range(2)]
    quad = bulk("NaCl", "rocksalt", a=5.5).repeat((2, 1, 1))
    quad.rattle(0.05, seed=3)
    config = RelaxConfig(scheduler="batched", steps=0)
    relax_chunk_batched(pairs, mace, config)
    batched = relax_chunk_batched([("quad", _json(quad))], mace, config)
    loop = relax_items(
        [("quad", _json(quad))], mace, config.model_copy(update={"scheduler": "serial"})
    )
    assert batched.loc[0, "status"] == "ok"
    np.testing.assert_allclose(batched["energy"], loop["energy"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(batched["fmax"], loop["fmax"], rtol=0, atol=1e-9)


def _nan_cell() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.6, cubic=True)
    atoms.positions[1] = atoms.positions[0]  # a zero-length edge: the model returns NaN
    return atoms


def _close_pair() -> Atoms:
    atoms = bulk("Na", "bcc", a=4.2, cubic=True)
    atoms.positions[1] = atoms.positions[0] + [0.3, 0, 0]
    return atoms


@pytest.mark.parametrize(
    ("update", "good", "bad", "extra", "reason"),
    [
        ({"min_volume_ratio": 0.6}, ["rs-4.6", "cs-3.0", "rs-7.0"], "rs-5.8x2", None,
         "volume collapse"),
        ({"min_distance": 2.4}, ["rs-7.0"], "rs-6.2", None, "overlapping atoms"),
        ({"min_distance": 0.0}, ["rs-4.6", "cs-3.0"], "nan", _nan_cell(),
         "non-finite energy or forces (E=nan)"),
    ],
)  # fmt: skip
def test_a_runaway_candidate_fails_and_the_batch_goes_on(mace, update, good, bad, extra, reason):
    mixed = dict(_items(MIXED, rattle=0.05))
    if extra is not None:
        mixed[bad] = _json(extra)
    items = [(i, mixed[i]) for i in [good[0], bad, *good[1:]]]
    config = RelaxConfig(scheduler="serial", **update)
    if config.min_distance > 0.3:
        items.append(("close-pair", _json(_close_pair())))
    loop = relax_items(items, mace, config).set_index("id")
    batched = relax_items(items, mace, _batched(config)).set_index("id")
    alone = relax_items([(i, mixed[i]) for i in good], mace, _batched(config)).set_index("id")

    failed = batched.loc[bad]
    assert failed["status"] == loop.loc[bad, "status"] == "failed"
    assert reason in failed["reason"] and reason in loop.loc[bad, "reason"]
    assert np.isnan(failed["energy"]) and failed["steps"] == 0 and not failed["converged"]
    assert failed["structure"]  # the last geometry is kept for diagnosis
    assert np.isfinite(failed["volume_ratio"])
    if config.min_distance > 0.3:
        assert batched.loc["close-pair", "status"] == "rejected"
        assert "input: overlapping atoms" in batched.loc["close-pair", "reason"]
    ok = batched.loc[good]
    assert (ok["status"] == "ok").all() and ok["converged"].all() and (ok["steps"] > 0).all()
    # the bad candidate changed nothing for the others: same as a batch without it
    np.testing.assert_allclose(ok["energy"], alone["energy"], rtol=0, atol=1e-9)
    assert list(ok["steps"]) == list(alone["steps"])
    np.testing.assert_allclose(ok["energy_per_atom"], loop.loc[good, "energy_per_atom"], atol=1e-3)


def test_an_element_the_model_lacks_fails_only_its_candidate(mace):
    # no ASE-loop reference here: MACE's calculator raises on K and leaves torch's default
    # dtype at float64 for the rest of the process (mace-torch 0.3.16)
    mixed = dict(_items(MIXED, rattle=0.05))
    good = ["rs-4.6", "cs-3.0"]
    kcl = ("kcl", _json(bulk("KCl", "rocksalt", a=6.3)))
    batched = relax_items([kcl, *((i, mixed[i]) for i in good)], mace, _batched(RelaxConfig()))
    alone = relax_items([(i, mixed[i]) for i in good], mace, _batched(RelaxConfig()))
    assert list(batched["status"]) == ["rejected", "ok", "ok"]  # refused before the model runs
    assert batched.loc[0, "reason"] == "input: element K not supported by mace"
    assert np.isnan(batched.loc[0, "energy"])
    np.testing.assert_allclose(batched["energy"][1:], alone["energy"], rtol=0, atol=1e-9)


def test_batched_chunks_are_written_and_a_rerun_skips_finished_ids(tmp_path, mace, relaxing):
    candidates = tmp_path / "candidates.parquet"
    rows = [{"id": i, "structure": s} for i, s in relaxing[:3]]
    pd.DataFrame([*rows, {"id": "broken", "structure": "{not json"}]).to_parquet(candidates)
    config = _batched(RelaxConfig(steps=20)).model_copy(update={"chunk_size": 2})
    out = tmp_path / "relax"
    table = pd.read_parquet(run_relax(candidates, out, mace, config))
    status = table.set_index("id")["status"]
    assert status.to_dict() == {**{i: "ok" for i, _ in relaxing[:3]}, "broken": "rejected"}
    chunks = sorted((out / "chunks").glob("*/chunk-*.parquet"))
    assert len(chunks) == 2
    assert sorted(len(pd.read_parquet(c)) for c in chunks) == [1, 2]
    meta = RelaxMeta.read(out / RELAX_META)
    assert meta.relax.engine == "batched" and meta.n_relaxed_this_run == 3

    small = next(c for c in chunks if len(pd.read_parquet(c)) == 1)
    kept = next(c for c in chunks if c != small)
    small.unlink()  # as if the process died before this chunk finished
    kept_mtime = kept.stat().st_mtime_ns
    rerun = pd.read_parquet(run_relax(candidates, out, mace, config))
    meta = RelaxMeta.read(out / RELAX_META)
    assert meta.n_relaxed_this_run == 1
    assert kept.stat().st_mtime_ns == kept_mtime
    pd.testing.assert_frame_equal(
        rerun.drop(columns="wall_s"), table.drop(columns="wall_s"), check_exact=False
    )


def test_batched_refuses_chgnet_and_fix_symmetry(nacl, mace):
    items = [("nacl", structure_to_json(nacl))]
    with pytest.raises(ValueError, match="supports MACE models only, not 'chgnet'"):
        relax_items(items, MLIPConfig(), RelaxConfig(scheduler="batched"))
    with pytest.raises(ValidationError, match="fix_symmetry is not available"):
        RelaxConfig(scheduler="batched", fix_symmetry=True)
    bypass = RelaxConfig(fix_symmetry=True).model_copy(update={"engine": "batched"})
    with pytest.raises(ValueError, match="fix_symmetry is not available"):
        relax_chunk_batched(items, mace, bypass)


def test_cli_relax_accepts_the_old_batched_scheduler(tmp_path, mace, relaxing):
    candidates = tmp_path / "candidates.parquet"
    pd.DataFrame([{"id": i, "structure": s} for i, s in relaxing[:2]]).to_parquet(candidates)
    runner = CliRunner()
    base = ["relax", str(candidates), "--scheduler", "batched", "--steps", "3"]
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "chgnet")])
    assert refused.exit_code == 1
    assert "error: batched relaxation (engine 'batched') supports MACE" in refused.output
    done = runner.invoke(
        app,
        [
            *base,
            "--out",
            str(tmp_path / "mace"),
            "--mlip",
            "mace",
            "--model",
            mace.model,
            "--model-sha256",
            mace.model_sha256,
        ],
    )
    assert done.exit_code == 0, done.output
    table = pd.read_parquet(tmp_path / "mace" / "relaxed.parquet")
    assert list(table["status"]) == ["ok", "ok"] and list(table["steps"]) == [3, 3]
