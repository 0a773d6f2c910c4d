"""The GPU smoke script runs end to end on a CPU with a tiny budget, ready for a lent GPU."""

from __future__ import annotations

import pytest

from benchmarks.gpu_smoke import main


@pytest.mark.slow
def test_gpu_smoke_on_cpu_with_two_steps(tmp_path) -> None:
    result = main(
        ["--steps", "2", "--n-samples", "4", "--device", "cpu", "--batch-size", "4",
         "--crystals", "12", "--sample-steps", "2", "--workers", "1",
         "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert set(result["models"]) == {"mcflow", "symadit"}
    for row in result["models"].values():
        assert row["n_samples"] == 4
        assert all(s["steps"] == 2 and s["ms_per_step"] > 0 for s in row["speed"].values())
    assert set(result["models"]["symadit"]["speed"]) == {"ae_trainer", "flow_trainer"}
    table = (tmp_path / "out" / "gpu_smoke.md").read_text()
    assert table.count("| mcflow |") == 1 and table.count("| symadit |") == 2
