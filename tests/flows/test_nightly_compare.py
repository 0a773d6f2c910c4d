"""The nightly comparison reads the previous night's ``metrics.json`` as typed rates."""

from __future__ import annotations

import json

import pytest

from flows.nightly import compare_metrics
from tasks.pipeline.sun import RUN_RATES, RateEstimate, estimate_as_dict, read_run_rates


def _rates(percent: float) -> dict:
    estimate = RateEstimate("S.U.N. (MLIP)", percent, percent - 1, percent + 1, 5, 100)
    return {"symadit/round1": {estimate.name: estimate_as_dict(estimate)}}


def test_a_drop_beyond_the_tolerance_is_reported(tmp_path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(_rates(5.0)))
    previous = read_run_rates(path)
    assert compare_metrics(RUN_RATES.validate_python(_rates(4.5)), previous) == []
    (drop,) = compare_metrics(RUN_RATES.validate_python(_rates(3.5)), previous)
    assert drop == "symadit/round1 S.U.N. (MLIP): 5.00 (5) → 3.50 (5) (-1.50 points)"
    path.write_text(json.dumps({"symadit/round1": {"S.U.N. (MLIP)": {"percent": 5.0}}}))
    with pytest.raises(ValueError, match=r"is not a run's metrics\.json"):
        read_run_rates(path)
