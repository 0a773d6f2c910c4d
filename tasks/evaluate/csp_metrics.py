"""Crystal structure prediction metrics (``docs/evaluation.md``, MCFlow/DiffCSP protocol).

- **Match rate @k**: fraction of test targets matched by any of their first ``k``
  predictions under ``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)``.
- **RMSE @k**: mean over matched targets of the smallest ``get_rms_dist(prediction,
  target)[0]``, which pymatgen already normalises by (V/N)^(1/3).
- **METRe** (polymorph-aware): a target counts as matched if *any* prediction made for
  any target with the same reduced composition matches it.
  **cRMSE** = (Σ matched RMSE + stol · unmatched) / N_test, over the same pools.

Predictions that fail the validity filter (``require_valid``: none, structural, or
structural + SMACT as in DiffCSP's ``is_valid``) or that are ``None`` never match.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from tasks.core.mapping import pool_map
from tasks.evaluate.settings import CSPConfig
from tasks.evaluate.validity import smact_validity, structural_validity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CSPTargetResult:
    """Per-target outcome: best RMS among own first k (``None`` = unmatched) and pooled."""

    target_id: str
    n_predictions: int
    rms_at_k: dict[int, float | None]
    pooled_rms: float | None


def _passes(structure: Structure | None, config: CSPConfig) -> bool:
    if structure is None:
        return False
    if config.require_valid == "none":
        return True
    ok = structural_validity(structure, config.validity)[0]
    if config.require_valid == "both":
        ok = ok and smact_validity(structure.composition, config.validity)[0]
    return ok


def _rms_list(args: tuple[Structure, list[Structure | None], CSPConfig]) -> list[float | None]:
    target, predictions, config = args
    matcher = config.matcher.build()
    out: list[float | None] = []
    for pred in predictions:
        rms = None
        if _passes(pred, config):
            try:
                found = matcher.get_rms_dist(pred, target)
                rms = None if found is None else float(found[0])
            except Exception as err:  # a broken prediction is a miss, not a crash
                logger.debug("rms failed: %s", err)
        out.append(rms)
    return out


def _best(values: Sequence[float | None]) -> float | None:
    hits = [v for v in values if v is not None]
    return min(hits) if hits else None


def evaluate_csp(
    targets: Sequence[tuple[str, Structure]],
    predictions: Mapping[str, Sequence[Structure | None]],
    config: CSPConfig | None = None,
) -> tuple[dict[str, object], list[CSPTargetResult]]:
    """Match rate / RMSE at each k, METRe and cRMSE.

    Parameters
    ----------
    targets
        ``(id, structure)`` of the test set.
    predictions
        Target id → its predictions in sampling order (missing ids have none).
    config
        Matcher, validity filter and the k values to report.

    Returns
    -------
    (dict, list of CSPTargetResult)
        Metrics (``match_rate@k``, ``rmse@k``, ``n_matched@k``, ``metre``, ``crmse``,
        ``n_targets``) and one result per target.
    """
    config = config or CSPConfig()
    by_comp: dict[str, list[str]] = defaultdict(list)
    for tid, structure in targets:
        by_comp[structure.composition.reduced_formula].append(tid)
    jobs, own_counts = [], []
    for tid, structure in targets:
        own = list(predictions.get(tid, ()))
        others = [
            p
            for other in by_comp[structure.composition.reduced_formula]
            if other != tid
            for p in predictions.get(other, ())
        ]
        jobs.append((structure, own + others, config))
        own_counts.append(len(own))
    rms_lists = pool_map(_rms_list, jobs, config.matcher.workers)
    results = []
    for (tid, _), rms, n_own in zip(targets, rms_lists, own_counts, strict=True):
        at_k = {k: _best(rms[: min(k, n_own)]) for k in config.k_values}
        results.append(CSPTargetResult(tid, n_own, at_k, _best(rms)))
    n = len(targets)
    metrics: dict[str, object] = {"n_targets": n, "require_valid": config.require_valid}
    for k in config.k_values:
        hits = [v for r in results if (v := r.rms_at_k[k]) is not None]
        metrics[f"n_matched@{k}"] = len(hits)
        metrics[f"match_rate@{k}"] = len(hits) / n if n else float("nan")
        metrics[f"rmse@{k}"] = float(np.mean(hits)) if hits else float("nan")
    pooled = [r.pooled_rms for r in results]
    matched = [v for v in pooled if v is not None]
    metrics["metre"] = len(matched) / n if n else float("nan")
    metrics["crmse"] = (
        (sum(matched) + config.matcher.stol * (n - len(matched))) / n if n else float("nan")
    )
    return metrics, results
