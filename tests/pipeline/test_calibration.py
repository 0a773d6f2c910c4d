"""The report's citation of our MLIP-vs-CP2K calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.core.stability import e_hull_difference
from tasks.pipeline.calibration import CALIBRATION_RECORD, calibration_sentence


def _verdicts(tp: int, fp: int, fn: int, tn: int, recall: float | None) -> dict:
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": recall,
    }


def _record(tmp_path: Path) -> Path:
    record = {
        "machine": {"date_utc": "2026-12-07 12:00"},
        "dft": "CP2K PBE (GTH, DZVP-MOLOPT-SR), no +U, static",
        "max_errors": 1,
        "wall_time_s": 720.0,
        "mlip_versions": {"chgnet": "chgnet-0.4.2:0.3.0", "sevennet": "sevenn-0.13.0:7net-0"},
        "scores": {
            "chgnet": {
                "difference": {
                    "n": 30,
                    "median": -0.05,
                    "median_abs": 0.07,
                    "p95_abs": 0.31,
                    "mean": -0.081,
                    "n_wild": 1,
                },
                "stable": _verdicts(3, 9, 1, 17, 0.6),
                "metastable": _verdicts(8, 10, 2, 10, None),
            },
            "sevennet": {"difference": {"n": 0}, "stable": {}, "metastable": {}},
        },
    }
    path = tmp_path / "mlip_vs_dft.json"
    path.write_text(json.dumps(record))
    return path


def test_sentence_gives_precision_and_recall_with_counts(tmp_path: Path) -> None:
    sentence = calibration_sentence("chgnet-0.4.2:0.3.0", _record(tmp_path))
    assert "mlip_vs_dft.md" in sentence and "30 candidates placed by both" in sentence
    assert "stable calls precision 0.25 (3 of 12)" in sentence
    assert "recall 0.60 (draw-weighted; 3 of 4 found)" in sentence
    assert "metastable precision 0.44 (8 of 18), recall –" in sentence
    assert "median -0.050 eV/atom" in sentence and "|Δ| 0.310" in sentence
    assert "1 further apart than 1 eV/atom" in sentence
    assert sentence.endswith("fewer than 40 candidates: indicative only")


def test_e_hull_difference_counts_the_wild_pairs_apart() -> None:
    estimate = np.array([0.05, -0.10, 0.20, 6.4, np.nan])
    reference = np.array([0.00, 0.00, 0.10, 40.2, 0.3])
    d = e_hull_difference(estimate, reference)
    assert d["n"] == 4 and d["n_wild"] == 1
    assert d["median"] == pytest.approx(-0.025) and d["median_abs"] == pytest.approx(0.1)
    assert d["mean"] == pytest.approx((0.05 - 0.10 + 0.10 - 33.8) / 4)
    assert e_hull_difference(np.array([np.nan]), np.array([0.0])) == {"n": 0}


def test_other_versions_are_not_calibrated(tmp_path: Path) -> None:
    record = _record(tmp_path)
    assert calibration_sentence("chgnet-0.4.2:other-weights", record).startswith(
        "No CP2K calibration of chgnet-0.4.2:other-weights"
    )
    assert "placed no candidate" in calibration_sentence("sevenn-0.13.0:7net-0", record)
    assert calibration_sentence("chgnet-0.4.2:0.3.0", tmp_path / "absent.json").startswith("No")


def test_the_shipped_record_calibrates_both_committee_members() -> None:
    versions = json.loads(CALIBRATION_RECORD.read_text())["mlip_versions"]
    assert set(versions) == {"chgnet", "sevennet"}
    for version in versions.values():
        assert calibration_sentence(version).startswith(f"Our CP2K check of {version}")
