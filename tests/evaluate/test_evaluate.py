"""End to end: evaluate a mixed set (good, duplicate, bad) via the function, CLI and flow."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from support.structures import sample_structures
from typer.testing import CliRunner

from tasks.core.records import STATUS_REJECTED, CrystalRecord, structure_to_json, write_records
from tasks.core.structure_io import read_structures, write_structures
from tasks.evaluate.funnel import Reference, evaluate_samples, write_evaluation
from tasks.evaluate.metrics import EvaluationMetrics, paper_row
from tasks.evaluate.settings import EvaluateConfig


def _record(ident: str, structure: Structure) -> CrystalRecord:
    return CrystalRecord(id=ident, source="test", structure=structure_to_json(structure))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Samples parquet (12 good, 2 duplicates, 1 copy of a reference, 5 bad) and a reference."""
    root = tmp_path_factory.mktemp("evaluate")
    good = list(sample_structures("mp20_test_sample200.csv.gz", 12))
    reference = list(sample_structures("mp20_train_sample1000.csv.gz", 40))
    translated = good[0][1].copy()
    translated.translate_sites(list(range(len(translated))), [0.3, 0.1, 0.2])
    nan_coords = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    nan_json = structure_to_json(nan_coords).replace("0.5", "NaN", 1)
    records = [_record(i, s) for i, s in good] + [
        _record("dup-translated", translated),
        _record("dup-exact", good[1][1]),
        _record("ref-copy", reference[3][1]),
        CrystalRecord(id="nan-coords", source="test", structure=nan_json),
        _record("zero-volume", Structure(Lattice(np.diag([4, 4, 0])), ["Fe"], [[0, 0, 0]])),
        _record(
            "unknown-element",
            Structure(Lattice.cubic(4.0), ["X0+", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        ),
        CrystalRecord(id="rejected", source="test", status=STATUS_REJECTED, reason="bad cif"),
        CrystalRecord(id="broken-json", source="test", structure="{"),
    ]
    samples = write_records(records, root / "samples.parquet")
    ref_path = write_structures(reference, root / "reference.parquet")
    return samples, ref_path, root


def _evaluate(inputs, **overrides):
    samples, ref_path, root = inputs
    config = EvaluateConfig(cache_dir=root / "cache", **overrides)
    return evaluate_samples(read_structures(samples), Reference(ref_path, config), config)


def test_verdicts_and_metrics(inputs):
    result = _evaluate(inputs)
    table = result.verdicts.set_index("id")
    assert len(table) == 20
    for bad in ("nan-coords", "zero-volume", "rejected", "broken-json"):
        assert not table.loc[bad, "valid_struct"] and table.loc[bad, "struct_reason"]
    assert "non-finite" in table.loc["nan-coords", "struct_reason"]
    assert "volume" in table.loc["zero-volume", "struct_reason"]
    assert "status rejected" in table.loc["rejected", "read_reason"]
    assert "unknown element" in table.loc["unknown-element", "comp_reason"]
    first, second = sample_structures("mp20_test_sample200.csv.gz", 2)
    assert table.loc["dup-translated", "unique_group"] == first[0]
    assert table.loc["dup-exact", "unique_group"] == second[0]
    assert not table.loc["dup-exact", "is_unique"]
    assert table.loc["ref-copy", "in_novelty_draw"] and not table.loc["ref-copy", "novel"]
    assert table.loc["ref-copy", "matched_reference"].startswith("mp-")
    m = result.metrics
    assert m.n_samples == 20 and m.n_valid_struct == 16  # 15 good + unknown element
    assert m.n_unique == 14
    assert m.uniqueness == pytest.approx(14 / 16)
    assert m.n_novelty_draw == 14 and m.n_novel == 13
    assert m.distribution.n_generated == 16
    assert 0 <= m.distribution.d_sg <= 1


def test_a_reference_of_parts_judges_as_the_merged_file_and_caches_each_part(inputs, tmp_path):
    samples, _, _ = inputs
    reference = list(sample_structures("mp20_train_sample1000.csv.gz", 40))
    # the part that joins holds the crystal one sample copies ("ref-copy" is reference[3])
    base = write_structures(reference[5:], tmp_path / "base.parquet")
    joined = write_structures(reference[:5], tmp_path / "joined.parquet")
    merged = write_structures(reference[5:] + reference[:5], tmp_path / "merged.parquet")
    config = EvaluateConfig(cache_dir=tmp_path / "cache")
    entries = read_structures(samples)
    whole = evaluate_samples(entries, Reference(merged, config), config)
    parts = evaluate_samples(entries, Reference(base, config, extra=(joined,)), config)
    columns = ["id", "novel", "matched_reference"]
    assert parts.verdicts[columns].equals(whole.verdicts[columns])
    assert not parts.verdicts.set_index("id").loc["ref-copy", "novel"]
    assert parts.metrics.distribution == whole.metrics.distribution
    assert parts.metrics.reference.path == f"{base} + {joined}"

    def indexes() -> list[str]:
        return sorted(p.name for p in (tmp_path / "cache").glob("refindex-*"))

    before = indexes()
    assert len(before) == 3  # merged, base, joined
    # a reference that grows by one more part builds that part's index only
    more = write_structures(reference[:1], tmp_path / "more.parquet")
    Reference(base, config, extra=(joined, more)).index()
    assert len(indexes()) == 4 and set(before) < set(indexes())


def test_draws_are_seeded(inputs):
    a = _evaluate(inputs, novelty_draw=5, dft_draw=2, seed=3).verdicts
    b = _evaluate(inputs, novelty_draw=5, dft_draw=2, seed=3).verdicts
    assert a["in_novelty_draw"].sum() == 5 and a["in_dft_draw"].sum() <= 2
    assert a.equals(b)
    draws = {
        tuple(_evaluate(inputs, novelty_draw=5, seed=s).verdicts["in_novelty_draw"])
        for s in range(4)
    }
    assert len(draws) > 1
    assert not (a["in_dft_draw"] & ~a["novel"].fillna(False).astype(bool)).any()


def test_outputs_written(inputs, tmp_path):
    result = _evaluate(inputs)
    paths = write_evaluation(result, tmp_path / "out", name="mixed")
    metrics = EvaluationMetrics.read(paths["metrics"])
    assert json.loads(metrics.model_dump_json()) == json.loads(result.metrics.model_dump_json())
    assert json.loads(paths["metrics"].read_text())["n_unique"] == 14  # the JSON keys stay
    assert metrics.n_unique == 14
    assert len(pd.read_parquet(paths["verdicts_parquet"])) == 20
    assert len(pd.read_csv(paths["verdicts_csv"])) == 20
    row = paper_row(result.metrics, "mixed")
    assert "| mixed | 80.00 (16) |" in row
    assert "mixed" in paths["summary"].read_text()
    assert not math.isnan(metrics.distribution.d_n)


def test_cli(inputs, tmp_path):
    from flows.cli import app

    samples, ref_path, root = inputs
    out = tmp_path / "cli"
    args = ["evaluate", str(samples), "--reference", str(ref_path), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--cache-dir", str(root / "cache")])
    assert result.exit_code == 0, result.output
    assert "| samples.parquet | 80.00 (16) |" in result.output
    assert (out / "metrics.json").exists() and (out / "verdicts.csv").exists()
    bad = CliRunner().invoke(app, ["evaluate", str(tmp_path / "nope"), "--reference", "x"])
    assert bad.exit_code != 0


def test_prefect_flow_on_dask_matches_local(inputs, tmp_path, prefect_harness):
    from prefect.client.orchestration import get_client

    from flows.evaluate import evaluate_on
    from tasks.core.cluster import DaskConfig, dask_cluster

    samples, ref_path, _ = inputs
    config = EvaluateConfig(cache_dir=tmp_path / "cache")  # the index is built on Dask too
    with dask_cluster(DaskConfig(cluster="local", n_workers=2, tasks_per_worker=2)) as cluster:
        result = evaluate_on(cluster, str(samples), str(ref_path), str(tmp_path / "flow"), config)
    assert result.metrics.n_unique == 14
    assert (tmp_path / "flow" / "verdicts.parquet").exists()
    local = _evaluate(inputs)
    pd.testing.assert_frame_equal(result.verdicts, local.verdicts)
    with get_client(sync_client=True) as client:
        names = {run.name.rsplit("-", 1)[0] for run in client.read_task_runs()}
    assert {"validity-chunk", "symmetry-chunk", "reduce-chunk", "novel-bucket"} <= names
