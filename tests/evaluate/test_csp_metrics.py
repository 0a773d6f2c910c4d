"""CSP match rate / RMSE at k, METRe and cRMSE."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from support.structures import rocksalt

from tasks.evaluate.csp_metrics import evaluate_csp
from tasks.evaluate.settings import CSPConfig


def _cscl(a: float = 4.1) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _jitter(structure: Structure, sigma: float, seed: int) -> Structure:
    rng = np.random.default_rng(seed)
    out = structure.copy()
    for i in range(len(out)):
        out.translate_sites([i], rng.normal(0, sigma, 3), frac_coords=False)
    return out


def test_match_rate_and_rmse_at_k():
    salt = rocksalt(cation="Cs", anion="Cl")  # the rock-salt polymorph of CsCl
    targets = [("t-salt", salt), ("t-cscl", _cscl())]
    predictions = {
        "t-salt": [_cscl(), _jitter(salt, 0.05, 0)],  # right answer only at k=2
        "t-cscl": [_jitter(_cscl(), 0.02, 1)],
    }
    metrics, results = evaluate_csp(targets, predictions, CSPConfig(k_values=(1, 2)))
    assert metrics["n_matched@1"] == 1 and metrics["match_rate@1"] == 0.5
    assert metrics["n_matched@2"] == 2 and metrics["match_rate@2"] == 1.0
    by_id = {r.target_id: r for r in results}
    assert by_id["t-salt"].rms_at_k[1] is None
    assert 0 < by_id["t-salt"].rms_at_k[2] < 0.1
    assert metrics["rmse@2"] == pytest.approx(
        np.mean([by_id["t-salt"].rms_at_k[2], by_id["t-cscl"].rms_at_k[1]])
    )


def test_metre_pools_polymorph_predictions_and_crmse():
    salt = rocksalt(cation="Cs", anion="Cl")
    targets = [("t-salt", salt), ("t-cscl", _cscl()), ("t-nacl", rocksalt())]
    predictions = {"t-salt": [_cscl()], "t-cscl": [salt], "t-nacl": [None]}
    metrics, results = evaluate_csp(targets, predictions, CSPConfig(k_values=(1,)))
    assert metrics["match_rate@1"] == 0.0  # each prediction went to the other polymorph
    assert metrics["metre"] == pytest.approx(2 / 3)  # pooled by composition: both match
    pooled = [r.pooled_rms for r in results]
    assert pooled[2] is None
    assert metrics["crmse"] == pytest.approx((pooled[0] + pooled[1] + 0.5) / 3)


def test_invalid_predictions_never_match():
    bad = Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [0.01, 0, 0]])
    metrics, _ = evaluate_csp([("t", _cscl())], {"t": [bad]}, CSPConfig(k_values=(1,)))
    assert metrics["n_matched@1"] == 0
    assert np.isnan(metrics["rmse@1"])
