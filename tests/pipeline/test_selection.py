"""Which candidates go to DFT: ranked and diverse picks over a hull table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.pipeline.selection import pick_for_dft


def _hull(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    systems = ["Li-Mn-O", "Mn-O", "Fe-O", "Na-Cl", "Li-Fe-P-O"]
    return pd.DataFrame(
        {
            "id": [f"c{i}" for i in range(n)],
            "chemsys": rng.choice(systems, size=n, p=[0.6, 0.1, 0.1, 0.1, 0.1]),
            "e_hull": np.where(rng.random(n) < 0.1, np.nan, rng.normal(0.1, 0.1, n)),
        }
    )


@pytest.mark.parametrize("m", [1, 2, 3])
def test_diverse_never_takes_more_than_m_per_system(m: int) -> None:
    for seed in range(20):
        hull = _hull(60, seed)
        picks = pick_for_dft(hull, 8, "diverse", seed=0, max_per_system=m)
        chosen = hull.set_index("id").loc[picks]
        assert chosen["chemsys"].value_counts().max() <= m
        assert chosen["e_hull"].notna().all()
        assert len(picks) == min(8, sum(min(m, k) for k in hull.dropna()["chemsys"].value_counts()))
        # within each system the picks are that system's lowest E_hull
        for system, group in chosen.groupby("chemsys"):
            best = hull[hull["chemsys"] == system].dropna().nsmallest(len(group), "e_hull")
            assert set(group.index) == set(best["id"])


def test_ranked_collapses_where_diverse_spreads() -> None:
    hull = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "chemsys": ["Mn-O", "Mn-O", "Mn-O", "Fe-O"],
         "e_hull": [-0.1, -0.05, 0.0, 0.2]}
    )  # fmt: skip
    assert pick_for_dft(hull, 2, "ranked", 0) == ["a", "b"]
    assert pick_for_dft(hull, 2, "diverse", 0) == ["a", "d"]
