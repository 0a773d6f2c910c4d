"""The run report: markdown tables and an HTML page with plots, every number linked to files.

The report is built from the files a run wrote (verdict tables, hull tables, DFT results),
so it can be rebuilt at any time and every figure points at the crystals behind it.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.atomic import atomic_write, write_text_atomic
from tasks.sun import FunnelStage, RateEstimate, funnel_table

STANDIN_WARNING = (
    "The DFT stage ran on the local stand-in (an MLIP-driven test double of VASP): "
    "the 'DFT' numbers below are MLIP numbers, not DFT."
)


@dataclass
class ModelReport:
    """Everything the report shows for one model in one round."""

    model: str
    round: int
    paper_row: str
    funnel: list[FunnelStage]
    estimates: list[RateEstimate]
    files: dict[str, Path]
    generated_spacegroups: list[int] = field(default_factory=list)
    generated_orbits: list[int] = field(default_factory=list)
    e_hull: list[float] = field(default_factory=list)
    top_candidates: list[tuple[str, str]] = field(default_factory=list)  # (id, structure JSON)
    confirmed: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["id", "structure"])
    )


def _link(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def markdown_report(reports: Sequence[ModelReport], base: Path, standin: bool) -> str:
    """Markdown: the paper-style row, the funnel with counts and the S.U.N. estimates."""
    lines = [f"> **{STANDIN_WARNING}**", ""] if standin else []
    lines.append("# S.U.N. estimation report\n")
    for r in reports:
        lines.append(f"## {r.model}, round {r.round}\n")
        lines.append(r.paper_row + "\n")
        lines.append(funnel_table(r.funnel))
        lines.append("| rate | % (count) | 95% interval | checked |\n| --- | --- | --- | --- |")
        lines += [
            f"| {e.name} | {e.paper_notation()} | {e.low:.2f}–{e.high:.2f} | {e.checked} |"
            for e in r.estimates
        ]
        lines.append(
            "\nFiles: " + ", ".join(f"[{k}]({_link(p, base)})" for k, p in r.files.items())
        )
        lines.append("")
    return "\n".join(lines)


def _plot(name: str, out_dir: Path, draw) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    draw(ax)
    fig.tight_layout()
    path = atomic_write(out_dir / name, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def _structure_image(structure_json: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.visualize.plot import plot_atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    from tasks.records import structure_from_json

    structure = structure_from_json(structure_json)
    atoms = AseAtomsAdaptor.get_atoms(structure).repeat((2, 2, 2))
    fig, ax = plt.subplots(figsize=(2.6, 2.6), dpi=100)
    plot_atoms(atoms, ax, rotation="10x,20y,0z", radii=0.5)
    ax.set_axis_off()
    ax.set_title(structure.composition.reduced_formula, fontsize=9)
    written = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return written


def html_report(
    reports: Sequence[ModelReport],
    train_spacegroups: Sequence[int],
    train_orbits: Sequence[int],
    out_dir: str | Path,
    standin: bool,
) -> Path:
    """Write ``index.html`` with the tables and plots into ``out_dir``; return its path."""
    out = Path(out_dir)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>S.U.N. report</title>",
        "<style>body{font-family:sans-serif;max-width:980px;margin:auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
        ".warn{background:#fde2e1;padding:8px;border:1px solid #d33}</style></head><body>",
    ]
    if standin:
        parts.append(f"<p class='warn'><b>{html.escape(STANDIN_WARNING)}</b></p>")
    parts.append("<h1>S.U.N. estimation report</h1>")
    train_sg = np.asarray(train_spacegroups)
    for r in reports:
        tag = f"{r.model}-round{r.round}"
        parts.append(f"<h2>{html.escape(r.model)}, round {r.round}</h2>")
        parts.append(f"<pre>{html.escape(r.paper_row)}</pre>")
        rows = "".join(
            f"<tr><td>{s.name}</td><td>{s.passed}</td><td>{s.checked}</td>"
            f"<td>{100 * s.fraction:.2f}%</td></tr>"
            for s in r.funnel
        )
        parts.append(
            f"<table><tr><th>stage</th><th>passed</th><th>checked</th><th>%</th></tr>{rows}</table>"
        )
        rates = "".join(
            f"<tr><td>{e.name}</td><td>{e.paper_notation()}</td><td>{e.low:.2f}–{e.high:.2f}</td></tr>"
            for e in r.estimates
        )
        parts.append(
            f"<table><tr><th>rate</th><th>% (count)</th><th>95% interval</th></tr>{rates}</table>"
        )
        gen_sg = np.asarray(r.generated_spacegroups)

        def sg_plot(ax, gen_sg=gen_sg):
            bins = np.arange(0.5, 231.5)
            ax.hist(train_sg, bins=bins, density=True, alpha=0.5, label="training")
            ax.hist(gen_sg, bins=bins, density=True, alpha=0.5, label="generated")
            ax.set_xlabel("space group")
            ax.legend()

        def orbit_plot(ax, r=r):
            top = max([*train_orbits, *r.generated_orbits, 1])
            bins = np.arange(0.5, top + 1.5)
            ax.hist(train_orbits, bins=bins, density=True, alpha=0.5, label="training")
            ax.hist(r.generated_orbits, bins=bins, density=True, alpha=0.5, label="generated")
            ax.set_xlabel("orbits per crystal")
            ax.legend()

        def hull_plot(ax, r=r):
            ax.hist(np.clip(r.e_hull, -0.5, 2.0), bins=40, color="#6a5")
            ax.axvline(0.0, color="k", lw=0.8)
            ax.axvline(0.1, color="k", lw=0.8, ls="--")
            ax.set_xlabel("MLIP E_hull (eV/atom, clipped to [-0.5, 2])")

        def funnel_plot(ax, r=r):
            names = [s.name for s in r.funnel]
            ax.barh(names[::-1], [s.passed for s in r.funnel][::-1], color="#37a")
            ax.set_xlabel("crystals passing")

        for name, draw in (
            ("sg", sg_plot),
            ("orbits", orbit_plot),
            ("ehull", hull_plot),
            ("funnel", funnel_plot),
        ):
            png = _plot(f"{tag}-{name}.png", out, draw)
            parts.append(f"<img src='{png.name}' alt='{name}'>")
        if r.top_candidates:
            parts.append("<h3>Top candidates (lowest MLIP E_hull)</h3><div>")
            for cid, structure_json in r.top_candidates:
                png = _structure_image(structure_json, out / f"{tag}-{_safe(cid)}.png")
                parts.append(
                    f"<figure style='display:inline-block'><img src='{png.name}'>"
                    f"<figcaption>{html.escape(cid)}</figcaption></figure>"
                )
            parts.append("</div>")
        links = " · ".join(
            f"<a href='{_link(p, out)}'>{html.escape(k)}</a>" for k, p in r.files.items()
        )
        parts.append(f"<p>Files: {links}</p>")
    parts.append("</body></html>")
    return write_text_atomic(out / "index.html", "\n".join(parts))


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def spacegroups_and_orbits(verdicts: pd.DataFrame) -> tuple[list[int], list[int]]:
    """Space groups and orbit counts of the structurally valid rows of a verdict table."""
    valid = verdicts[verdicts["spacegroup"] > 0]
    return [int(g) for g in valid["spacegroup"]], [int(k) for k in valid["n_orbits"]]
