"""MCFlow end to end on real MP-20 crystals: overfit, CSP recovery, ATG invariants, seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.analysis.structure_matcher import StructureMatcher

from models.contract import SampleRequest
from models.mcflow import api
from models.mcflow.config import MCFlowConfig
from models.mcflow.data import collate, item_from_structure
from models.mcflow.validation import coord_loss_by_time
from models.sample_output import read_samples
from tasks.core.records import load_structures, write_records
from tasks.core.structure_io import read_structures, write_structures
from tasks.ingest.analysis import analyse_entry
from tasks.ingest.config import IngestConfig
from tasks.ingest.sources import RawEntry

torch.set_num_threads(1)

#: Eight small, distinct-composition crystals of the bundled MP-20 train sample:
#: TbAu, SnSb, VB2, BeO, YAl3, HoNiSb, EuHg2, ScTeRh.
MEMORIZE = ["mp-11258", "mp-10635", "mp-1491", "mp-2542", "mp-11231", "mp-4174", "mp-20719",
            "mp-1100405"]  # fmt: skip
MATCHER = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory, mp20_train_sample: Path) -> Path:
    """An ingested dataset of the :data:`MEMORIZE` crystals (real ingest analysis)."""
    frame = pd.read_csv(mp20_train_sample)
    frame = frame[frame["material_id"].isin(MEMORIZE)]
    records = [
        analyse_entry(
            RawEntry(
                id=f"sample:{row.material_id}",
                source="sample",
                material_id=row.material_id,
                payload=row.cif,
            ),
            IngestConfig(),
        )
        for row in frame.itertuples()
    ]
    assert all(r.status == "ok" for r in records), [r.reason for r in records]
    return write_records(records, tmp_path_factory.mktemp("mcflow_data") / "dataset.parquet")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, small_dataset: Path) -> Path:
    """The tiny MCFlow trained to memorize the eight crystals (about 30 s on one core)."""
    cfg = api.resolve_config("tiny")
    cfg.data.val_fraction = 0.0
    cfg.validation.n_samples = 0
    cfg.train.batch_size = 8
    cfg.train.max_steps = 4000
    cfg.train.warmup_steps = 50
    cfg.train.max_epochs = None
    cfg.train.lr = 2e-3
    cfg.train.ema_decay = 0.99
    cfg.train.val_every = 0
    cfg.train.ckpt_every = 2000
    cfg.train.progress = False
    out = tmp_path_factory.mktemp("mcflow_run")
    return api.train(cfg, small_dataset, out)


def _sample(checkpoint: Path, task: str = "dng", **fields: object) -> list:
    return api.sample(
        SampleRequest.model_validate({"checkpoint": checkpoint, "task": task, **fields})
    )


def _train_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").open()]
    return [x["loss"] for x in lines if x["split"] == "train"]


def test_overfit_loss_falls(trained: Path) -> None:
    losses = _train_losses(trained.parent)
    assert trained.name == "latest.pt"
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:3])


def test_csp_recovers_memorized_crystals(trained: Path, small_dataset: Path) -> None:
    ids, references = load_structures(small_dataset)
    records = _sample(trained, "csp", structures=small_dataset, seed=0, steps=50, k=4, guidance=1)
    assert all(r.status == "ok" for r in records)
    assert {r.extra["guidance"] for r in records} == {1.0}
    missed = []
    for ident, ref in zip(ids, references, strict=True):
        candidates = [r.to_structure() for r in records if r.extra["source_id"] == ident]
        assert all(c.composition == ref.composition for c in candidates)
        if not any(MATCHER.fit(ref, c) for c in candidates):
            missed.append(ref.composition.reduced_formula)
    assert len(references) == 8 and not missed, f"not recovered in 4 samples: {missed}"


def test_csp_formula_list_with_guidance(trained: Path, tmp_path: Path) -> None:
    records = _sample(
        trained, "csp", compositions=["TbAu", "Be2O2"], seed=3, steps=20, out_dir=tmp_path
    )
    assert [r.formula for r in records] == ["TbAu", "BeO"]
    assert [r.n_atoms for r in records] == [2, 4]
    assert {r.extra["guidance"] for r in records} == {2.0}  # the config's omega when k = 1
    bad = _sample(trained, "csp", compositions=["Li0.5O"], seed=3, steps=5)
    assert bad[0].status == "failed" and "fractional" in bad[0].reason
    with pytest.raises(ValueError, match="not de novo"):
        _sample(trained, "dng", n=2, guidance=2.0)


def test_atg_and_substitution_keep_structure_and_known_sites(
    trained: Path, small_dataset: Path, tmp_path: Path
) -> None:
    _, references = load_structures(small_dataset)
    shuffled = []
    for ref in references:  # input order need not be MCFlow order
        s = ref.copy()
        s.sort(key=lambda site: -site.specie.Z)
        shuffled.append(s)
    inputs = write_structures(
        [(f"in-{i}", s) for i, s in enumerate(shuffled)], tmp_path / "in.extxyz"
    )
    shuffled = [s for _, s, _ in read_structures(inputs) if s is not None]  # as read back
    records = _sample(trained, "atg", structures=inputs, seed=1, steps=20, out_dir=tmp_path / "out")
    for rec, ref in zip(records, shuffled, strict=True):
        out = rec.to_structure()
        assert np.array_equal(out.lattice.matrix, ref.lattice.matrix)
        assert np.array_equal(out.frac_coords, ref.frac_coords)
    masks = [[0] for _ in shuffled]
    subs = _sample(trained, "atg", structures=inputs, mask_sites=masks, seed=2, steps=20, k=3)
    assert len(subs) == 3 * len(shuffled)
    for rec in subs:
        ref = shuffled[int(rec.extra["source_id"].split("-")[1])]
        out = rec.to_structure()
        assert np.array_equal(out.frac_coords, ref.frac_coords)
        assert [s.species_string for s in out][1:] == [s.species_string for s in ref][1:]
    # Memorized: ATG without guidance gives back the training elements (any of 3 samples).
    # (SnSb in rock salt is ambiguous: both sites are geometrically equivalent.)
    plain = _sample(trained, "atg", structures=inputs, seed=1, steps=20, k=3, guidance=1)
    recovered = {
        rec.extra["source_id"]
        for rec in plain
        if rec.to_structure().composition
        == shuffled[int(rec.extra["source_id"].split("-")[1])].composition
    }
    assert len(recovered) >= 3


def test_seed_reproducibility_and_outputs(trained: Path, tmp_path: Path) -> None:
    a = _sample(trained, n=6, seed=7, steps=10, out_dir=tmp_path / "a")
    b = _sample(trained, n=6, seed=7, steps=10)
    c = _sample(trained, n=6, seed=8, steps=10)
    assert [r.structure for r in a] == [r.structure for r in b]
    assert [r.structure for r in a] != [r.structure for r in c]
    assert [r.id for r in a] == [f"mcflow-7-{i:06d}" for i in range(6)]
    back = read_samples(tmp_path / "a")
    assert [r.id for r in back] == [r.id for r in a]
    ok = [r for r in a if r.status == "ok"]
    assert len(list((tmp_path / "a" / "cifs").glob("*.cif"))) == len(ok)


def test_coord_loss_diagnostic_beats_a_zero_prediction(trained: Path, small_dataset: Path) -> None:
    """The memorized crystals' coordinate velocities are learned: late in the flow (where the
    noisy coordinates determine where atoms go) the benchmark's diagnostic puts the model well
    below a zero prediction (measured: 0.009 and 0.003 against 0.063), and the same seed gives
    the same figures."""
    model, cfg, _ = api.load_model(trained, "cpu")
    items = api.load_dataset_items(small_dataset, cfg.data.max_atoms)
    losses = coord_loss_by_time(model, items, (0.7, 0.9))
    assert losses == coord_loss_by_time(model, items, (0.7, 0.9))
    for row in losses.values():
        assert row["free"] < 0.3 * row["zero_free"]


def test_collate_augmentation_preserves_crystal(small_dataset: Path) -> None:
    _, structures = load_structures(small_dataset)
    item = item_from_structure("x", structures[-1])
    batch = collate([item, item], np.random.default_rng(0))
    assert batch.mask.sum().item() == 2 * item.n_atoms
    for b in range(2):
        types = batch.types[b, : item.n_atoms].numpy()
        assert sorted(types.tolist()) == sorted(item.types.tolist())


def test_resume_matches_straight_training(small_dataset: Path, tmp_path: Path) -> None:
    cfg = MCFlowConfig.model_validate(
        {
            "network": {"hidden": 32, "depth": 1, "heads": 2},
            "data": {"val_fraction": 0.0},
            "validation": {"n_samples": 0},
            "train": {
                "batch_size": 2,
                "max_steps": 6,
                "ckpt_every": 3,
                "val_every": 0,
                "progress": False,
            },
        }
    )
    api.train(cfg, small_dataset, tmp_path / "straight")
    cfg.train.max_steps = 3
    api.train(cfg, small_dataset, tmp_path / "resumed")
    cfg.train.max_steps = 6
    api.train(cfg, small_dataset, tmp_path / "resumed", resume=True)
    a = torch.load(tmp_path / "straight" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "latest.pt", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_cli_sample(trained: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    args = ["sample", "-m", "mcflow", "--checkpoint", str(trained), "-t", "csp"]
    args += ["-f", "TbAu", "-k", "2", "--steps", "5", "--seed", "4", "-o", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [r.id for r in read_samples(tmp_path)] == ["mcflow-4-000000", "mcflow-4-000001"]
