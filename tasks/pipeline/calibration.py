"""Our own MLIP-vs-DFT calibration, cited beside every S.U.N. (MLIP) figure of a report.

``python -m benchmarks.mlip_vs_dft`` places CHGNet- and SevenNet-screened candidates on
hulls of competing phases recomputed with CP2K and records, per MLIP version, how its
E_hull and its stable / metastable verdicts compare (``benchmarks/results/mlip_vs_dft.json``).
:func:`calibration_sentence` turns that record into the sentence a report prints for the
MLIP that screened a run: only for the very version calibrated (other weights, other
numbers), and saying so when there is none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.core.paths import REPO_ROOT
from tasks.core.stability import WILD_DIFFERENCE

#: Below this many placed candidates the calibration is called indicative.
FEW = 40
#: The calibration record ``benchmarks/mlip_vs_dft.py`` writes.
CALIBRATION_RECORD = REPO_ROOT / "benchmarks" / "results" / "mlip_vs_dft.json"


def _fraction(value: float | None, hits: int, calls: int) -> str:
    return "–" if value is None else f"{value:.2f} ({hits} of {calls})"


def _recall(verdicts: dict[str, Any]) -> str:
    """Recall weights randomly drawn candidates by their draw; the counts are unweighted."""
    if verdicts["recall"] is None:
        return "–"
    found, real = verdicts["tp"], verdicts["tp"] + verdicts["fn"]
    return f"{verdicts['recall']:.2f} (draw-weighted; {found} of {real} found)"


def calibration_sentence(mlip_version: str, record: Path = CALIBRATION_RECORD) -> str:
    """What our CP2K calibration says of ``mlip_version``'s verdicts, in one sentence.

    Parameters
    ----------
    mlip_version
        The version a hull states (e.g. ``chgnet-0.4.2:0.3.0``).
    record
        The calibration record (JSON written by ``benchmarks/mlip_vs_dft.py``).

    Returns
    -------
    str
        Precision and recall of the version's stable and metastable calls against CP2K with
        their counts and the median E_hull difference, naming the record; or that no
        calibration of this version is recorded.
    """
    result: dict[str, Any] = json.loads(record.read_text()) if record.is_file() else {}
    names = [n for n, v in result.get("mlip_versions", {}).items() if v == mlip_version]
    if not names:
        return f"No CP2K calibration of {mlip_version} is recorded ({record.name})"
    scores = result.get("scores", {}).get(names[0], {})
    stable, meta = scores.get("stable", {}), scores.get("metastable", {})
    diff = scores.get("difference", {"n": 0})
    if not diff["n"]:
        return f"Our CP2K check of {mlip_version} placed no candidate ({record.name})"
    return (
        f"Our CP2K check of {mlip_version} ({record.with_suffix('.md').name}, "
        f"{result['machine']['date_utc']}, {diff['n']} candidates placed by both, "
        f"{result['dft']}, at most {result['max_errors']} custodian correction(s) and "
        f"{result['wall_time_s']:.0f} s per calculation): stable calls precision "
        f"{_fraction(stable['precision'], stable['tp'], stable['tp'] + stable['fp'])}, "
        f"recall {_recall(stable)}; "
        f"metastable precision "
        f"{_fraction(meta['precision'], meta['tp'], meta['tp'] + meta['fp'])}, recall "
        f"{_recall(meta)}; "
        f"E_hull(MLIP) − E_hull(CP2K) median {diff['median']:+.3f} eV/atom "
        f"(95th percentile of |Δ| {diff['p95_abs']:.3f}"
        + (
            f"; {diff['n_wild']} further apart than {WILD_DIFFERENCE:g} eV/atom"
            if "n_wild" in diff
            else ""
        )
        + ")"
        + (f"; fewer than {FEW} candidates: indicative only" if diff["n"] < FEW else "")
    )
