"""Between the filters: which crystals move on, and how the funnel is counted.

Pure functions over the stage tables (verdicts from :mod:`tasks.evaluate`, hull results
from :mod:`tasks.hull`, DFT results from :mod:`tasks.dft_hull`), so every count in the
report is a filter over rows with ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tasks.atomic import atomic_write
from tasks.sun import FunnelStage


def vun_ids(verdicts: pd.DataFrame) -> list[str]:
    """Ids of the valid, unique and novel crystals (the drawn ones, in table order)."""
    mask = verdicts["in_novelty_draw"].astype(bool) & (verdicts["novel"] == True)  # noqa: E712
    return list(verdicts.loc[mask, "id"])


def write_candidates(
    ids: list[str], samples: pd.DataFrame, path: str | Path, id_column: str = "id"
) -> Path:
    """Write the rows of ``samples`` whose ids are listed (in that order) as a parquet."""
    chosen = samples.set_index(id_column).loc[ids].reset_index()
    return atomic_write(path, lambda tmp: chosen.to_parquet(tmp, index=False))


def pick_for_dft(
    hull: pd.DataFrame,
    n: int,
    strategy: Literal["ranked", "random"],
    seed: int,
) -> list[str]:
    """Candidates for DFT among those placed on the MLIP hull.

    ``ranked`` takes the lowest MLIP E_hull first (discovery); ``random`` draws uniformly
    (the papers' unbiased S.U.N. estimate). Candidates the hull could not place are never
    sent.
    """
    placed = hull[hull["e_hull"].notna()]
    if strategy == "ranked":
        return list(placed.sort_values(["e_hull", "id"])["id"].head(n))
    rng = np.random.default_rng(seed)
    ids = sorted(placed["id"])
    return [ids[i] for i in sorted(rng.choice(len(ids), size=min(n, len(ids)), replace=False))]


def evaluation_funnel(verdicts: pd.DataFrame) -> list[FunnelStage]:
    """Generated → valid → unique → novel, as the papers count them."""
    n = len(verdicts)
    valid = verdicts[verdicts["valid_struct"].astype(bool)]
    unique = valid[valid["is_unique"].astype(bool)]
    drawn = verdicts[verdicts["in_novelty_draw"].astype(bool)]
    novel = drawn[drawn["novel"] == True]  # noqa: E712
    return [
        FunnelStage("valid", len(valid), n),
        FunnelStage("unique", len(unique), len(valid)),
        FunnelStage("novel", len(novel), len(drawn)),
    ]
