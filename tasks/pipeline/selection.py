"""Between the filters: which crystals move on, and how the funnel is counted.

Pure functions over the stage tables (verdicts from :mod:`tasks.evaluate.funnel`, hull results
from :mod:`tasks.mlip.hull`, DFT results from :mod:`tasks.dft.collect`), so every count in the
report is a filter over rows with ids.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from tasks.core.atomic import atomic_write
from tasks.core.columns import Col
from tasks.pipeline.config import SelectionConfig
from tasks.pipeline.sun import FunnelStage


def vun_ids(verdicts: pd.DataFrame) -> list[str]:
    """Ids of the valid, unique and novel crystals (the drawn ones, in table order)."""
    mask = verdicts[Col.IN_NOVELTY_DRAW].astype(bool) & (verdicts[Col.NOVEL] == True)  # noqa: E712
    return list(verdicts.loc[mask, Col.ID])


def write_candidates(ids: list[str], rows: pd.DataFrame, path: str | Path) -> Path:
    """Write the rows whose ids are listed (in that order) as a parquet (an identical file
    written by an earlier, resumed run stays as it is)."""
    chosen = rows.set_index(Col.ID).loc[ids].reset_index()
    return atomic_write(path, lambda tmp: chosen.to_parquet(tmp, index=False), keep_identical=True)


def pick_for_dft(
    hull: pd.DataFrame,
    n: int,
    strategy: Literal["ranked", "random", "diverse"],
    seed: int,
    max_per_system: int = 1,
) -> list[str]:
    """Candidates for DFT among those placed on the MLIP hull.

    ``ranked`` takes the lowest MLIP E_hull first (discovery; with a committee, the lowest
    of the members' highest E_hull, :attr:`Col.E_HULL_COMMITTEE`); ``random`` draws uniformly
    (the papers' unbiased S.U.N. estimate); ``diverse`` goes down the ranking too but takes
    at most ``max_per_system`` per chemical system (the hull's ``chemsys``, e.g. ``Mn-O``),
    so that a round explores several systems instead of collapsing onto one family.
    Candidates the hull could not place are never sent.
    """
    key = Col.E_HULL_COMMITTEE if Col.E_HULL_COMMITTEE in hull.columns else Col.E_HULL
    placed = hull[hull[key].notna()]
    ranking = placed.sort_values([key, Col.ID])
    if strategy == "ranked":
        return list(ranking[Col.ID].head(n))
    if strategy == "diverse":
        taken: Counter[str] = Counter()
        picks: list[str] = []
        for ident, system in zip(ranking[Col.ID], ranking[Col.CHEMSYS], strict=True):
            if len(picks) < n and taken[system] < max_per_system:
                picks.append(ident)
                taken[system] += 1
        return picks
    rng = np.random.default_rng(seed)
    ids = sorted(placed[Col.ID])
    return [ids[i] for i in sorted(rng.choice(len(ids), size=min(n, len(ids)), replace=False))]


def write_mlip_candidates(
    samples: Path, verdicts: Path, path: Path, selection: SelectionConfig
) -> Path | None:
    """The V.U.N. samples (at most ``selection.max_relax``) as the MLIP's input, or ``None``."""
    ids = vun_ids(pd.read_parquet(verdicts))[: selection.max_relax]
    if not ids:
        return None
    return write_candidates(ids, pd.read_parquet(samples), path)


def write_dft_candidates(
    hull: Path, relaxed: Path, path: Path, selection: SelectionConfig, seed: int
) -> Path | None:
    """The picks for DFT (their MLIP-relaxed structures), or ``None`` when there are none.

    With ``selection.dft_max_atoms`` only crystals of at most that many atoms are eligible.
    """
    if selection.n_dft == 0:
        return None
    rows, structures = pd.read_parquet(hull), pd.read_parquet(relaxed)
    if selection.dft_max_atoms is not None:
        small = structures.loc[structures[Col.N_ATOMS] <= selection.dft_max_atoms, Col.ID]
        rows = rows[rows[Col.ID].isin(set(small))]
    ids = pick_for_dft(rows, selection.n_dft, selection.strategy, seed, selection.max_per_system)
    if not ids:
        return None
    return write_candidates(ids, structures, path)


def evaluation_funnel(verdicts: pd.DataFrame) -> list[FunnelStage]:
    """Generated → valid → unique → novel, as the papers count them."""
    n = len(verdicts)
    valid = verdicts[verdicts[Col.VALID_STRUCT].astype(bool)]
    unique = valid[valid[Col.IS_UNIQUE].astype(bool)]
    drawn = verdicts[verdicts[Col.IN_NOVELTY_DRAW].astype(bool)]
    novel = drawn[drawn[Col.NOVEL] == True]  # noqa: E712
    return [
        FunnelStage("valid", len(valid), n),
        FunnelStage("unique", len(unique), len(valid)),
        FunnelStage("novel", len(novel), len(drawn)),
    ]
