"""Sanity figures on real MP-20 data: test against train (docs/evaluation.md)."""

from __future__ import annotations

import pytest

from tasks.evaluate.funnel import evaluate_path
from tasks.evaluate.settings import EvaluateConfig


def _check(metrics: dict, p1: tuple[float, float], max_dsg: float) -> None:
    assert metrics.structural_validity == 1.0
    assert 0.86 <= metrics.compositional_validity <= 0.94  # paper: ~90% pass SMACT
    assert metrics.uniqueness >= 0.99
    d = metrics.distribution
    assert p1[0] <= d.p1_rate <= p1[1]
    assert d.d_sg < max_dsg
    assert d.d_w < max_dsg


def test_fixture_sample_against_train_sample(shared_data, tmp_path):
    fixtures = shared_data / "fixtures"
    config = EvaluateConfig(workers=2, cache_dir=tmp_path, novelty_draw=50)
    metrics = evaluate_path(
        fixtures / "mp20_test_sample200.csv.gz", fixtures / "mp20_train_sample1000.csv.gz", config
    ).metrics
    # 200 samples: the P1 count is small and d_SG carries finite-sample noise
    _check(metrics, p1=(0.0, 0.05), max_dsg=0.45)
    assert metrics.novelty >= 0.9


@pytest.mark.slow
def test_mp20_test_against_train_partial(shared_data, tmp_path):
    config = EvaluateConfig(workers=2, cache_dir=tmp_path)
    metrics = evaluate_path(
        shared_data / "mp_20" / "test.csv.gz",
        shared_data / "mp_20" / "train_partial.csv.gz",
        config,
    ).metrics
    # at pymatgen's symprec 0.01 (the papers'): P1 2.23 % on test (1.81 % at 0.1, data
    # README); the papers quote ~1.6-2.2 % for MP-20
    _check(metrics, p1=(0.018, 0.026), max_dsg=0.1)
