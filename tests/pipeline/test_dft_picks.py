"""Each DFT pick is reported with its MLIP and DFT E_hull side by side, or with its reason."""

from __future__ import annotations

import math

import pandas as pd

from tasks.dft.settings import DftStageConfig
from tasks.pipeline.report import pick_rows
from tasks.pipeline.summary import dft_picks


def test_picks_show_both_e_hulls_and_the_reason_of_those_without_dft() -> None:
    hull = pd.DataFrame(
        {"id": ["a", "b", "c"], "e_hull": [-0.01, 0.05, 0.2], "formula": ["NaCl", "CeO2", "LiF"]}
    )
    dft = pd.DataFrame(
        {
            "id": ["a", "b", "c"],
            "formula": ["NaCl", "", "LiF"],  # a rejected input has no formula of its own
            "dft_status": ["completed", "rejected", "no_hull"],
            "reason": ["", "CP2K has no basis for Ce", "competing phase mp-1 (Li): failed: a | b"],
            "e_hull_dft": [0.031, None, None],
        }
    )
    picks = dft_picks(dft, hull)
    assert [(p.id, p.e_hull_mlip, p.e_hull_dft) for p in picks] == [
        ("a", -0.01, 0.031),
        ("b", 0.05, None),
        ("c", 0.2, None),
    ]
    rows = pick_rows(picks)
    assert rows[0] == ["a", "NaCl", "-0.010", "+0.031", "completed"]
    assert rows[1][3] == "" and rows[1][4] == "rejected: CP2K has no basis for Ce"
    assert rows[1][1] == "CeO2"
    assert "competing phase mp-1" in rows[2][4] and "|" not in rows[2][4]  # a table cell
    assert not math.isnan(picks[2].e_hull_mlip)


def test_the_cp2k_label_names_code_functional_and_hull() -> None:
    label = DftStageConfig(mode="cp2k").describe()
    assert label.startswith("CP2K PBE (GTH, DZVP-MOLOPT-SR), no +U")
    assert label.endswith("hull of recomputed competing phases")
    assert "not DFT" in DftStageConfig(mode="standin").describe()
