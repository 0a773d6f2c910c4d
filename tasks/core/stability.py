"""The stability rule, written once: the MLIP hull and the DFT hull both classify with it.

The papers' protocol (``docs/evaluation.md``, step 6): **stable** when E_hull < 0 eV/atom,
**metastable** when E_hull < 0.1 eV/atom, both only for crystals of at least two distinct
elements. The inequalities are strict: a crystal exactly on the hull (a known phase
recomputed, E_hull = 0) is metastable, not stable. E_hull values within
:data:`HULL_TOLERANCE` of a threshold count as *on* it, so floating-point noise from the
phase-diagram solver cannot decide a verdict.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from tasks.core.config import StrictModel

#: E_hull differences below this (eV/atom) are numerical noise of the hull construction.
HULL_TOLERANCE = 1e-6
#: Two E_hull of one crystal further apart than this (eV/atom) disagree about what the crystal
#: is, not about where it sits: such pairs are counted apart in :func:`e_hull_difference`.
WILD_DIFFERENCE = 1.0


class StabilityRule(StrictModel):
    """Thresholds of the stable / metastable verdicts (eV/atom, strict inequalities)."""

    stable_below: float = Field(default=0.0, description="stable: E_hull < this")
    metastable_below: float = Field(default=0.1, description="metastable: E_hull < this")
    min_elements: int = Field(default=2, ge=1, description="fewer distinct elements: neither")

    @model_validator(mode="after")
    def _ordered(self) -> StabilityRule:
        if self.metastable_below < self.stable_below:
            raise ValueError("metastable_below must not be below stable_below")
        return self

    def classify(self, e_hull: float, n_elements: int) -> tuple[bool, bool]:
        """``(stable, metastable)`` of a crystal with this E_hull and element count."""
        if not math.isfinite(e_hull) or n_elements < self.min_elements:
            return False, False
        return (
            e_hull < self.stable_below - HULL_TOLERANCE,
            e_hull < self.metastable_below - HULL_TOLERANCE,
        )


def far_apart(estimate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Which pairs of E_hull lie further apart than :data:`WILD_DIFFERENCE` (a boolean mask;
    a pair with a missing value is not)."""
    d = np.asarray(estimate, dtype=float) - np.asarray(reference, dtype=float)
    return np.abs(np.nan_to_num(d, nan=0.0)) > WILD_DIFFERENCE


def e_hull_difference(estimate: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How far one E_hull estimate sits from another, crystal by crystal (eV/atom).

    Parameters
    ----------
    estimate, reference
        E_hull of the same crystals, in the same order; pairs with a missing value are left
        out.

    Returns
    -------
    dict
        ``n`` pairs; of ``estimate − reference`` the ``median``, ``median_abs``, ``p95_abs``
        (95th percentile of the absolute) and ``mean``; ``n_wild`` of them further apart
        than :data:`WILD_DIFFERENCE` (one absurd crystal moves the mean by eV/atom, the
        median and percentile hardly). ``{"n": 0}`` when no pair is complete.
    """
    d = np.asarray(estimate, dtype=float) - np.asarray(reference, dtype=float)
    wild = far_apart(estimate, reference)
    d = d[np.isfinite(d)]
    if not d.size:
        return {"n": 0}
    return {
        "n": int(d.size),
        "median": float(np.median(d)),
        "median_abs": float(np.median(np.abs(d))),
        "p95_abs": float(np.percentile(np.abs(d), 95)),
        "mean": float(d.mean()),
        "n_wild": int(wild.sum()),
    }
