"""The run report: markdown and an HTML page with tables and plots, every number linked to files.

:func:`write_report` builds it from a run directory alone (``config.yaml``, the training
set and each round's files, through :func:`tasks.pipeline.summary.summarize_run`), so it can
be rebuilt at any time (``discovery report RUN_DIR``) and every figure points at the
crystals behind it. It writes ``report/report.md``, ``report/index.html`` with its plots,
and ``metrics.json`` (the rates per model and round).
"""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tasks.core.atomic import atomic_write, write_json_atomic, write_text_atomic
from tasks.core.config import validate_config
from tasks.core.plotting import pyplot
from tasks.core.records import structure_from_json
from tasks.evaluate.metrics import PAPER_COLUMNS, paper_cells, paper_row
from tasks.pipeline.calibration import calibration_sentence
from tasks.pipeline.config import PipelineConfig
from tasks.pipeline.summary import DftPick, RoundSummary, summarize_run
from tasks.pipeline.sun import estimate_as_dict, funnel_table

LEADERBOARD_NOTE = (
    "Every generator of the run on the same funnel, the same training set for novelty, the "
    "same MLIP and the same papers' hull; S.U.N. / M.S.U.N. (MLIP) cells are percent (count) "
    "of the candidates the MLIP checked, then the 95 % interval. Symmetry figures at the "
    "tolerance in the symprec column, for the samples and the training set alike. Each "
    "model's section cites our own CP2K calibration of the MLIP's verdicts."
)
STANDIN_WARNING = (
    "The DFT stage ran on the local stand-in (an MLIP-driven test double of VASP): "
    "the 'DFT' numbers below are MLIP numbers, not DFT."
)


def _link(path: Path, base: Path) -> str:
    return os.path.relpath(path, base)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


_RATE_HEADER = ("rate", "% (count)", "95% interval", "checked")


def _rate_rows(summary: RoundSummary) -> list[list[str]]:
    return [
        [e.name, e.paper_notation(), f"{e.low:.2f}–{e.high:.2f}", str(e.checked)]
        for e in summary.estimates
    ]


def _funnel_rows(summary: RoundSummary) -> list[list[str]]:
    return [
        [s.name, f"{s.passed:,}", f"{s.checked:,}", f"{100 * s.fraction:.2f}%"]
        for s in summary.funnel
    ]


_SANITY_HEADER = ("quantity", "generated", "training", "flag")


def _sanity_rows(summary: RoundSummary) -> list[list[str]]:
    return [
        [
            row.quantity,
            f"{row.generated:.3f}",
            f"{row.training:.3f}" if row.limit is not None else "—",
            f"FAR OFF (limit ±{row.limit:g})" if row.far_off else "",
        ]
        for row in summary.sanity
    ]


#: The rates the leaderboard puts beside the paper row (``—`` where a round has none).
_LEADERBOARD_RATES = ("S.U.N. (MLIP)", "M.S.U.N. (MLIP)")
_LEADERBOARD_HEADER = (*PAPER_COLUMNS[:1], "round", *PAPER_COLUMNS[1:], *_LEADERBOARD_RATES)


def _leaderboard_rows(summaries: Sequence[RoundSummary]) -> list[list[str]]:
    """Every model (and samples file) of the run in one table: the paper row and the MLIP
    S.U.N. / M.S.U.N. with counts and 95 % intervals."""
    rows = []
    for r in summaries:
        rates = {e.name: e for e in r.estimates}
        cells = [
            f"{e.paper_notation()} of {e.checked} [{e.low:.2f}–{e.high:.2f}]"
            if (e := rates.get(name)) is not None
            else "—"
            for name in _LEADERBOARD_RATES
        ]
        paper = paper_cells(r.metrics, r.model)
        rows.append([paper[0], str(r.round), *paper[1:], *cells])
    return rows


#: The round-by-round figures, in the order of :attr:`RoundSummary.progress`.
_PROGRESS = ("V.U.N.", "MLIP stable / V.U.N.", "hit rate")
_PROGRESS_HEADER = ("model", "round", "checkpoint", "trained on", "MLIP", *_PROGRESS)


def _progress_rows(summaries: Sequence[RoundSummary]) -> list[list[str]]:
    rows = []
    for r in summaries:
        cells = [
            f"{e.paper_notation()} of {e.checked} [{e.low:.1f}–{e.high:.1f}]" for e in r.progress
        ]
        ckpt = r.checkpoint
        trained = f"{ckpt.n_train:,} crystals" if ckpt and ckpt.n_train else "—"
        if ckpt and ckpt.init_from:
            trained += " (fine-tuned)"
        mlip = r.hull.mlip_version if r.hull is not None else "—"
        ckpt_id = ckpt.checkpoint_id if ckpt else "—"
        rows.append([r.model, str(r.round), ckpt_id, trained, mlip,
                     *cells, *["—"] * (len(_PROGRESS) - len(cells))])  # fmt: skip
    return rows


def progress_plot(ax: Any, summaries: Sequence[RoundSummary]) -> None:
    """The round-by-round figures of every model as lines over the rounds."""
    for model in dict.fromkeys(r.model for r in summaries):
        rounds = [r for r in summaries if r.model == model]
        for k, (name, style) in enumerate(zip(_PROGRESS, ("-", "--", ":"), strict=True)):
            points = [(r.round, r.progress[k].percent) for r in rounds if len(r.progress) > k]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, marker="o", label=f"{model}: {name}")
    ax.set_xlabel("round")
    ax.set_ylabel("%")
    ax.set_xticks(sorted({r.round for r in summaries}))
    ax.legend(fontsize=7)


def loop_lines(config: PipelineConfig) -> list[str]:
    """What the loop learned between rounds: the generators, and the MLIP."""
    if config.rounds == 1:
        return []
    loop = config.loop
    lines = [
        "Generators: fine-tuned after every round on the training set plus the crystals "
        f"confirmed so far ({loop.evidence} evidence, each {loop.discovered_weight}×)."
        if loop.finetune
        else "Generators: not fine-tuned; every round samples the same checkpoints."
    ]
    if loop.mlip_finetune:
        lines.append(
            "MLIP: fine-tuned after every round on the DFT results so far; each round relaxes "
            "its candidates and computes its whole hull with its own version (column MLIP)."
        )
    else:
        lines.append("MLIP: not fine-tuned; every round screens with the same version.")
    if config.dft.mode == "standin":
        lines.append(
            "MLIP fine-tuning on the local stand-in would learn the MLIP's own numbers "
            "(circular), so it is meaningful only with real DFT."
        )
    return lines


_PICKS_HEADER = ("sent to DFT", "formula", "MLIP E_hull", "DFT E_hull", "DFT outcome")


def pick_rows(picks: Sequence[DftPick]) -> list[list[str]]:
    """Each DFT pick's MLIP and DFT E_hull (eV/atom) and the DFT outcome with its reason."""
    return [
        [
            p.id,
            p.formula,
            f"{p.e_hull_mlip:+.3f}",
            "" if p.e_hull_dft is None else f"{p.e_hull_dft:+.3f}",
            p.status
            + (f": {p.reason.splitlines()[0][:160].replace('|', '/')}" if p.reason else ""),
        ]
        for p in picks
    ]


def evidence_lines(summary: RoundSummary) -> list[str]:
    """The sentences that say what the numbers rest on: references, MLIP, flags, known."""
    m = summary.metrics
    lines = [
        f"Novelty is judged against the training set ({m.reference.path}); of the {m.n_novel} "
        f"novel crystals, {m.n_known} are known phases of the hull's reference sets "
        "(matched with the same StructureMatcher)."
    ]
    far = [row.quantity for row in summary.sanity if row.far_off]
    if far:
        lines.append(
            "Red flag: the samples are far from the training set in " + ", ".join(far) + "."
        )
    if summary.hull is not None:
        h = summary.hull
        lines.append(f"MLIP hull ({h.mlip_version}): {h.reference}.")
        lines.append(
            f"{h.n_flagged} of {h.n_candidates} candidates are flagged ({h.n_uncovered} with a "
            f"chemical system the references do not cover; {h.n_stable_flagged} of the MLIP-"
            "stable ones are flagged): a flagged candidate is not a discovery until its flag is "
            "resolved."
        )
        if h.warning:
            lines.append(f"Note: {h.warning}.")
        if summary.dft_energies:
            lines.append(
                f"DFT energies: {summary.dft_energies} (each pick's MLIP and DFT E_hull are in "
                "the table below)."
            )
        if h.committee is not None:
            lines.append(
                f"{h.committee.describe()}. S.U.N. (MLIP) is the committee's; each member's own "
                "figure is in the rates table (E_hull shown elsewhere is the first MLIP's)."
            )
        else:
            lines.append(
                f"Stability judged by one MLIP ({h.mlip_version}), no committee: "
                "`mlip: [chgnet, sevennet]` in the profile adds SevenNet on its own hull."
            )
        versions = (
            [m.mlip_version for m in h.committee.members] if h.committee else [h.mlip_version]
        )
        lines += [calibration_sentence(version) + "." for version in versions]
    return lines


def markdown_report(
    summaries: Sequence[RoundSummary], base: Path, standin: bool, loop: Sequence[str] = ()
) -> str:
    """Markdown: the paper-style row, sanity figures, the funnel, the rates and their evidence;
    then the rounds side by side with what the loop learned (``loop``: :func:`loop_lines`)."""
    lines = [f"> **{STANDIN_WARNING}**", ""] if standin else []
    lines.append("# S.U.N. estimation report\n")
    if summaries:
        lines.append("## Leaderboard\n")
        lines.append(_md_table(_LEADERBOARD_HEADER, _leaderboard_rows(summaries)))
        lines.append(LEADERBOARD_NOTE + "\n")
    for r in summaries:
        lines.append(f"## {r.model}, round {r.round}\n")
        lines.append(paper_row(r.metrics, r.model) + "\n")
        lines.append(_md_table(_SANITY_HEADER, _sanity_rows(r)))
        lines.append(funnel_table(r.funnel))
        lines.append(_md_table(_RATE_HEADER, _rate_rows(r)))
        lines += [f"- {line}" for line in evidence_lines(r)]
        if r.dft_picks:
            lines.append("")
            lines.append(_md_table(_PICKS_HEADER, pick_rows(r.dft_picks)))
        if r.top_candidates:
            lines.append("\nLowest MLIP E_hull: " + "; ".join(
                f"{cid}" + (f" (FLAGGED: {flags})" if flags else "")
                for cid, _, flags in r.top_candidates
            ))  # fmt: skip
        lines.append("Files: " + ", ".join(f"[{k}]({_link(p, base)})" for k, p in r.files.items()))
        lines.append("")
    if summaries:
        lines.append("## Round by round\n")
        lines.append(_md_table(_PROGRESS_HEADER, _progress_rows(summaries)))
        lines += [f"- {line}" for line in loop]
    return "\n".join(lines)


def _plot(name: str, out_dir: Path, draw: Callable[[Any], None]) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    draw(ax)
    fig.tight_layout()
    path = atomic_write(out_dir / name, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return path


def _structure_image(structure_json: str, path: Path) -> Path:
    from ase.visualize.plot import plot_atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    structure = structure_from_json(structure_json)
    # one cell with its edges (a 2x2x2 repeat cost 1.4 s a picture: eight times the patches)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.6, 2.6), dpi=100)
    plot_atoms(atoms, ax, rotation="10x,20y,0z", radii=0.5, show_unit_cell=2)
    ax.set_axis_off()
    ax.set_title(structure.composition.reduced_formula, fontsize=9)
    written = atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)
    return written


def comparison_plot(
    ax: Any,
    generated: Sequence[int],
    reference: Sequence[int],
    reference_label: str,
    xlabel: str,
    bins: np.ndarray,
) -> None:
    """Density histograms of a generated set beside its reference set (if there is one)."""
    if reference:
        ax.hist(reference, bins=bins, density=True, alpha=0.5, label=reference_label)
    ax.hist(generated, bins=bins, density=True, alpha=0.5, label="generated")
    ax.set_xlabel(xlabel)
    ax.legend()


def _expanded(histogram: dict[int, int]) -> list[int]:
    """A histogram's values, each repeated by its count (what ``hist`` takes)."""
    return [value for value, count in sorted(histogram.items()) for _ in range(count)]


def html_report(
    summaries: Sequence[RoundSummary],
    out_dir: Path,
    standin: bool,
    loop: Sequence[str] = (),
) -> Path:
    """Write ``index.html`` with the tables and plots into ``out_dir``; return its path.

    The space-group and orbit plots put each round's samples beside the reference set it
    was judged against, both at the evaluation's symmetry tolerance.
    """
    out = Path(out_dir)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>S.U.N. report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #ccc;padding:3px 8px}"
        ".warn{background:#fde2e1;padding:8px;border:1px solid #d33}.flag{color:#b00}"
        "</style></head><body>",
    ]
    if standin:
        parts.append(f"<p class='warn'><b>{html.escape(STANDIN_WARNING)}</b></p>")
    parts.append("<h1>S.U.N. estimation report</h1>")
    if summaries:
        parts.append("<h2>Leaderboard</h2>")
        parts.append(_html_table(_LEADERBOARD_HEADER, _leaderboard_rows(summaries)))
        parts.append(f"<p>{html.escape(LEADERBOARD_NOTE)}</p>")
        parts.append("<h2>Round by round</h2>")
        parts.append(_html_table(_PROGRESS_HEADER, _progress_rows(summaries)))
        if loop:
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in loop) + "</ul>")
        png = _plot("rounds.png", out, lambda ax: progress_plot(ax, summaries))
        parts.append(f"<img src='{png.name}' alt='round by round'>")
    for r in summaries:
        tag = f"{r.model}-round{r.round}"
        parts.append(f"<h2>{html.escape(r.model)}, round {r.round}</h2>")
        parts.append(_html_table(PAPER_COLUMNS, [paper_cells(r.metrics, r.model)]))
        parts.append("<h3>Samples against the training set</h3>")
        parts.append(_html_table(_SANITY_HEADER, _sanity_rows(r)))
        parts.append(_html_table(("stage", "passed", "checked", "%"), _funnel_rows(r)))
        parts.append(_html_table(_RATE_HEADER, _rate_rows(r)))
        parts.append(
            "<ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in evidence_lines(r))
            + "</ul>"
        )
        if r.dft_picks:
            parts.append(_html_table(_PICKS_HEADER, pick_rows(r.dft_picks)))
        reference = r.metrics.distribution.reference_histograms
        label = f"training ({r.metrics.distribution.tolerance})"
        gen_orbits = r.generated_orbits
        train_orbits = _expanded(reference.get("orbits", {}))
        top = max([*train_orbits, *gen_orbits, 1])
        sg_plot = partial(
            comparison_plot,
            generated=r.generated_spacegroups,
            reference=_expanded(reference.get("spacegroup", {})),
            reference_label=label,
            xlabel="space group",
            bins=np.arange(0.5, 231.5),
        )
        orbit_plot = partial(
            comparison_plot,
            generated=gen_orbits,
            reference=train_orbits,
            reference_label=label,
            xlabel="orbits per crystal",
            bins=np.arange(0.5, top + 1.5),
        )

        def hull_plot(ax: Any, r: RoundSummary = r) -> None:
            ax.hist(np.clip(r.e_hull, -0.5, 2.0), bins=40, color="#6a5")
            ax.axvline(0.0, color="k", lw=0.8)
            ax.axvline(0.1, color="k", lw=0.8, ls="--")
            ax.set_xlabel("MLIP E_hull (eV/atom, clipped to [-0.5, 2])")

        def funnel_plot(ax: Any, r: RoundSummary = r) -> None:
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
            parts.append("<h3>Lowest MLIP E_hull</h3><div>")
            for cid, structure_json, flags in r.top_candidates:
                png = _structure_image(structure_json, out / f"{tag}-{_safe(cid)}.png")
                flag = (
                    f"<br><span class='flag'>FLAGGED: {html.escape(flags)}</span>" if flags else ""
                )
                parts.append(
                    f"<figure style='display:inline-block;max-width:260px'><img src='{png.name}'>"
                    f"<figcaption>{html.escape(cid)}{flag}</figcaption></figure>"
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


def read_run_config(run_dir: Path) -> PipelineConfig:
    """The resolved configuration a run recorded (``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
    return validate_config(yaml.safe_load(path.read_text()), PipelineConfig, str(path))


@dataclass(frozen=True)
class Report:
    """Where a report was written, with its markdown and the rates per model and round."""

    html: Path
    markdown: str
    metrics: dict[str, dict[str, Any]]


def write_report(run_dir: str | Path) -> Report:
    """Build the report of a run directory from its files (see the module docstring)."""
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    summaries = summarize_run(run_dir, config)
    out = run_dir / "report"
    standin = config.dft.mode == "standin" and any("dft_results" in s.files for s in summaries)
    loop = loop_lines(config)
    markdown = markdown_report(summaries, out, standin, loop)
    write_text_atomic(out / "report.md", markdown)
    page = html_report(summaries, out, standin, loop)
    metrics = {
        f"{s.model}/round{s.round}": {
            e.name: estimate_as_dict(e) for e in [*s.estimates, *s.progress]
        }
        for s in summaries
    }
    write_json_atomic(run_dir / "metrics.json", metrics)
    return Report(html=page, markdown=markdown, metrics=metrics)
