"""Summary statistics and distribution plots of a processed dataset."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.atomic import atomic_write
from tasks.core.plotting import pyplot
from tasks.core.records import STATUS_OK


def _moments(values: pd.Series) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def dataset_stats(frame: pd.DataFrame) -> dict[str, Any]:
    """Counts and distributions of a processed dataset (all rows, any status).

    Returns
    -------
    dict
        ``counts`` (total / ok / rejected / failed and rejects by reason), ``p1_fraction``,
        ``n_spacegroups``, ``spacegroup_histogram``, ``atoms_per_cell``, ``unique_elements``,
        ``orbits_per_crystal`` (mean/std/min/max) and ``n_wyckoff_pairs`` (distinct
        (space group, Wyckoff letter) pairs), computed over the ``ok`` rows.
    """
    ok = frame[frame["status"] == STATUS_OK]
    bad = frame[frame["status"] != STATUS_OK]
    reasons = Counter(r.split(":")[0] for r in bad["reason"])
    pairs = {
        (int(sg), letter)
        for sg, letters in zip(ok["spacegroup"], ok["wyckoff_letters"], strict=True)
        for letter in set(letters)
    }
    histogram = Counter(int(g) for g in ok["spacegroup"])
    return {
        "counts": {
            "total": len(frame),
            "ok": len(ok),
            "rejected": int((frame["status"] == "rejected").sum()),
            "failed": int((frame["status"] == "failed").sum()),
            "reject_reasons": dict(reasons.most_common()),
        },
        "p1_fraction": float((ok["spacegroup"] == 1).mean()) if len(ok) else float("nan"),
        "n_spacegroups": len(histogram),
        "spacegroup_histogram": {str(g): n for g, n in sorted(histogram.items())},
        "atoms_per_cell": _moments(ok["n_atoms"]),
        "unique_elements": _moments(ok["n_elements"]),
        "orbits_per_crystal": _moments(ok["n_orbits"]),
        "n_wyckoff_pairs": len(pairs),
    }


def _save_png(fig: Any, path: Path) -> None:
    fig.savefig(path, format="png")


def plot_distributions(frame: pd.DataFrame, out_dir: str | Path, title: str = "") -> list[Path]:
    """Write ``spacegroups.png`` and ``orbits.png`` histograms of the ``ok`` rows."""
    plt = pyplot()
    ok = frame[frame["status"] == STATUS_OK]
    out_dir = Path(out_dir)
    written = []
    specs = [
        ("spacegroups.png", ok["spacegroup"], np.arange(0.5, 231.5, 1.0), "space group number"),
        (
            "orbits.png",
            ok["n_orbits"],
            np.arange(0.5, max(ok["n_orbits"], default=1) + 1.5),
            "orbits per crystal",
        ),
    ]
    for name, values, bins, xlabel in specs:
        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=120)
        ax.hist(values, bins=bins, color="#3b6ea8")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("crystals")
        ax.set_title(f"{title} ({len(ok)} crystals)" if title else f"{len(ok)} crystals")
        fig.tight_layout()
        written.append(atomic_write(out_dir / name, partial(_save_png, fig)))
        plt.close(fig)
    return written
