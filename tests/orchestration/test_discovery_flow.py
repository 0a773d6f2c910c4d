"""The S.U.N. graph in a real Prefect test harness, on a micro profile."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from flows.discovery import discovery_flow
from tasks.report import STANDIN_WARNING


def test_discovery_flow_end_to_end(micro: Path, prefect_harness) -> None:
    result = discovery_flow(profile=str(micro), run_id="e2e")
    run = micro.parent / "runs" / "e2e"
    report = Path(result["report"])
    assert report == run / "report" / "index.html" and report.exists()
    markdown = (run / "report" / "report.md").read_text()
    assert markdown.splitlines()[0].endswith(f"**{STANDIN_WARNING}**")
    metrics = json.loads((run / "metrics.json").read_text())
    assert "mcflow/round1" in metrics
    verdicts = pd.read_parquet(run / "round-1" / "mcflow" / "filters" / "verdicts.parquet")
    samples = pd.read_parquet(run / "round-1" / "mcflow" / "samples" / "samples.parquet")
    assert list(verdicts["id"]) == list(samples["id"])  # every sample judged, none dropped
    assert (run / "config.yaml").exists()


def test_wrong_parameters_fail_before_any_work(tmp_path: Path, micro: Path) -> None:
    with pytest.raises(ValueError, match="neither a file nor a profile"):
        discovery_flow.fn(profile="no-such-profile")
    with pytest.raises(ValueError, match=r"selection\.n_dft"):
        discovery_flow.fn(profile=str(micro), overrides={"selection.n_dft": -1})
    with pytest.raises(ValueError, match=r"models\.0\.name"):
        discovery_flow.fn(profile=str(micro), overrides={"models": [{"name": "gpt"}]})
    assert not (micro.parent / "runs").exists()
