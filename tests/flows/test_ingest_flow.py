"""The ``discovery ingest`` command and the Prefect ``ingest`` flow on real data."""

import pandas as pd
from typer.testing import CliRunner

from flows.cli import app
from flows.ingest import ingest_flow
from tasks.core.records import read_records
from tasks.pipeline.config import PipelineConfig


def test_cli_ingest(tmp_path, mp20_test_sample) -> None:
    small = tmp_path / "small.csv"
    pd.read_csv(mp20_test_sample, nrows=5).to_csv(small, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["ingest", str(small), "--out", str(out), "-j", "1", "--cache-dir", str(tmp_path / "c")],
    )
    assert result.exit_code == 0, result.output
    assert "P1 fraction" in result.output
    assert len(read_records(out / "small" / "dataset.parquet")) == 5
    assert (out / "summary.md").exists()


def test_cli_rejects_a_bad_config(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  symprec: 0\n")
    result = CliRunner().invoke(app, ["ingest", "--config", str(bad)])
    assert result.exit_code != 0
    assert "ingest.symprec" in result.output


def test_prefect_ingest_flow(tmp_path, mp20_test_sample, prefect_harness) -> None:
    config = PipelineConfig.model_validate(
        {
            "datasets": {"test": {"kind": "csv", "path": str(mp20_test_sample), "limit": 4}},
            "ingest": {"n_workers": 1, "cache_dir": str(tmp_path / "cache"), "plots": False},
        }
    )
    results = ingest_flow(out_dir=str(tmp_path / "run"), config=config)
    assert [r.name for r in results] == ["mp20_test_sample200"]
    assert len(read_records(tmp_path / "run" / "test" / "dataset.parquet")) == 4
    assert (tmp_path / "run" / "summary.json").exists()
