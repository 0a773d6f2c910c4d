"""Our own MLIP-vs-DFT calibration: CHGNet and SevenNet E_hull against CP2K on the same phases.

Run from the repository root on a quiet machine (CP2K installed: ``make setup``), after a
S.U.N. benchmark run (the leaderboard's)::

    .venv/bin/python -m benchmarks.mlip_vs_dft --run runs/leaderboard

Candidates: the CHGNet-relaxed V.U.N. crystals of the run's generators (``--models``, the
benchmark profile's two by default) that CHGNet placed on its hull, have at most
``--max-atoms`` atoms, only elements CP2K's data files cover, and no competing phase (below)
over ``--max-phase-atoms`` atoms (the large ones are the calculations that run past the wall
time; the count left out for it is reported). From each model every
MLIP-metastable one is taken (so precision is measured on all of CHGNet's (meta)stable calls)
plus ``--others`` drawn at random (seed 0) from the rest; recall weights the drawn ones by
the inverse of their draw fraction, and every count is reported beside it.

Each candidate gets:

- CHGNet's E_hull on the shipped CHGNet table's hull (the run's own hull rows);
- SevenNet's (7net-0) E_hull: a single point at CHGNet's geometry on SevenNet's shipped hull
  (the committee stage);
- CP2K's E_hull: a static at CHGNet's geometry on the hull of its competing phases (its
  decomposition on CHGNet's hull and its elements' ground states) recomputed with the same
  settings (:mod:`tasks.dft.cp2k_stage`, the product's default settings; one attempt per
  calculation with ``--max-errors`` custodian corrections, 1 by default against the
  product's 3, and ``--wall-time`` seconds, to bound the cost of an SCF that never
  converges: such candidates are listed as failed, so the comparison leans toward crystals
  whose SCF converges).

Resumable: every calculation is cached (``data/cache/mlip_vs_dft/``, the shared references),
so a second run computes only what is missing, and ``--collect-only`` scores what is there.
Across machines too: each run starts by adding the completed calculations carried in
``--carry`` (``benchmarks/results/mlip_vs_dft_calcs/``: one archive of
:mod:`tasks.dft.archive` per model and one of the references) and ends by packing them again,
so a calibration longer than one sitting goes on where the last machine stopped.

Recorded: E_hull(MLIP) − E_hull(CP2K) (median, median and 95th percentile of the absolute,
the mean, and how many differ by more than 1 eV/atom, each listed: one absurd crystal moves
the mean by eV/atom, the median hardly), and
precision / recall of each MLIP's stable (< 0) and metastable (< 0.1 eV/atom) verdicts
against CP2K's, with counts. Writes ``benchmarks/results/mlip_vs_dft.{json,md}`` (the record
every report cites; ``--results-name`` writes another, e.g. a calibration still under way).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from pymatgen.core import Composition

from benchmarks.machine import machine_info, save_results
from tasks.core.atomic import atomic_write
from tasks.core.columns import Col
from tasks.core.config import load_config
from tasks.core.paths import REPO_ROOT
from tasks.core.records import structure_from_json
from tasks.core.stability import (
    WILD_DIFFERENCE,
    StabilityRule,
    e_hull_difference,
    far_apart,
)
from tasks.core.structure_io import write_structures
from tasks.dft.archive import export_completed, import_completed
from tasks.dft.cp2k import covered_elements, spin_polarized
from tasks.dft.cp2k_stage import run_cp2k_stage
from tasks.dft.recomputed_hull import competing_sets
from tasks.dft.settings import Cp2kSettings, Cp2kStageConfig, DftStageConfig
from tasks.mlip.committee import published_figures, run_committee
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.mlip.settings import (
    CommitteeConfig,
    CommitteeMember,
    MLIPConfig,
    RelaxConfig,
    ScreenSettings,
)
from tasks.pipeline.config import PipelineConfig
from tasks.pipeline.summary import RoundFiles

WORK = REPO_ROOT / "data" / "cache" / "mlip_vs_dft"
#: The MLIPs calibrated: the run's (CHGNet, which relaxed) and the committee member.
MLIPS = ("chgnet", "sevennet")


def largest_phase(rows: pd.DataFrame, screen: ScreenSettings) -> pd.Series:
    """Atoms in the largest phase each candidate's CP2K hull would recompute (0: none found,
    the candidate will be ``no_hull`` with the reason)."""
    structures = [structure_from_json(s) for s in rows[Col.STRUCTURE]]
    sets = competing_sets(list(zip(rows[Col.ID], structures, strict=True)), screen)
    sizes = [max((len(p.structure()) for p in c.phases), default=0) for c in sets]
    return pd.Series(sizes, index=rows.index, dtype=int)


def choose(
    hull: pd.DataFrame, relaxed: pd.DataFrame, screen: ScreenSettings, args: argparse.Namespace
) -> pd.DataFrame:
    """The model's calibration candidates, with their draw weight (1 for the metastable)."""
    settings = DftStageConfig().cp2k
    covered = covered_elements(settings)
    rows = hull.merge(relaxed[[Col.ID, Col.N_ATOMS, Col.STRUCTURE]], on=Col.ID)
    eligible = rows[
        rows[Col.E_HULL].notna()
        & (rows[Col.N_ATOMS] <= args.max_atoms)
        & (rows[Col.N_ELEMENTS] >= 2)
        & rows[Col.FORMULA].map(lambda f: {e.symbol for e in Composition(f).elements} <= covered)
    ]
    if args.closed_shell_only:
        polarized = eligible[Col.STRUCTURE].map(
            lambda s: spin_polarized(structure_from_json(s), settings)
        )
        eligible = eligible[~polarized.astype(bool)]
    largest = largest_phase(eligible, screen)
    eligible = eligible[largest <= args.max_phase_atoms]
    # CHGNet's own verdict: in a committee run the hull's ``metastable`` is the committee's
    chgnet_metastable = eligible[Col.E_HULL] < screen.stability.metastable_below
    called = eligible[chgnet_metastable].assign(weight=1.0)
    rest = eligible[~chgnet_metastable].sort_values(Col.ID)
    rng = np.random.default_rng(args.seed)
    n = min(args.others, len(rest))
    drawn = rest.iloc[sorted(rng.choice(len(rest), size=n, replace=False))] if n else rest[:0]
    drawn = drawn.assign(weight=len(rest) / n if n else 0.0)
    picked = pd.concat([called, drawn], ignore_index=True)
    n_large = int((largest > args.max_phase_atoms).sum())
    return picked.assign(n_eligible=len(eligible), n_large_phase=n_large)


def verdict_scores(mlip: pd.Series, dft: pd.Series, weight: pd.Series) -> dict[str, Any]:
    """Counts of the MLIP's verdicts against DFT's, precision and (weighted) recall."""
    tp, fp = int((mlip & dft).sum()), int((mlip & ~dft).sum())
    fn, tn = int((~mlip & dft).sum()), int((~mlip & ~dft).sum())
    weighted_tp = float(weight[mlip & dft].sum())
    weighted_fn = float(weight[~mlip & dft].sum())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": weighted_tp / (weighted_tp + weighted_fn) if weighted_tp + weighted_fn else None,
    }


def carry_run(run: Path, models: list[str], max_atoms: int, dest: Path) -> None:
    """Write the part of the run the calibration reads (its config, and per model the hull
    rows, relaxed crystals and hull summary of the crystals up to ``max_atoms`` atoms) to
    ``dest``, laid out as a run, so ``--run dest`` chooses the same candidates without the
    run itself."""
    if dest.resolve() == run.resolve():
        return
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "config.yaml", dest / "config.yaml")
    for model in models:
        files, kept = RoundFiles(run / "round-1" / model), RoundFiles(dest / "round-1" / model)
        relaxed = pd.read_parquet(files.relaxed)
        relaxed = relaxed[relaxed[Col.N_ATOMS] <= max_atoms]
        hull = pd.read_parquet(files.hull)
        for frame, path in (
            (relaxed, kept.relaxed),
            (hull[hull[Col.ID].isin(relaxed[Col.ID])], kept.hull),
        ):
            write = partial(pd.DataFrame.to_parquet, frame, index=False)
            atomic_write(path, write, keep_identical=True)
        shutil.copyfile(files.hull_dir / HULL_SUMMARY, kept.hull_dir / HULL_SUMMARY)


def calibrate(
    root: Path, screen: ScreenSettings, dft: DftStageConfig, args: argparse.Namespace
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One model's candidates through SevenNet and CP2K; its rows and the MLIPs' versions."""
    files = RoundFiles(root)
    hull, relaxed = pd.read_parquet(files.hull), pd.read_parquet(files.relaxed)
    picked = choose(hull, relaxed, screen, args)
    chosen = set(picked[Col.ID])
    work = WORK / root.name
    candidates = write_structures(
        [
            (i, structure_from_json(s))
            for i, s in zip(picked[Col.ID], picked[Col.STRUCTURE], strict=True)
        ],
        work / "candidates.parquet",
    )
    members, committee = run_committee(
        relaxed[relaxed[Col.ID].isin(chosen)],
        hull[hull[Col.ID].isin(chosen)],
        screen,
        work / "committee",
    )
    start = time.perf_counter()
    results = pd.read_parquet(
        run_cp2k_stage(candidates, work / "cp2k", dft, screen, start_new=not args.collect_only)
    )
    wall = time.perf_counter() - start
    counts = ["weight", "n_eligible", "n_large_phase"]
    table = picked[[Col.ID, Col.FORMULA, Col.N_ATOMS, Col.E_HULL, *counts]]
    table = table.rename(columns={Col.E_HULL: "e_hull_chgnet"}).merge(
        members[[Col.ID, "e_hull_sevennet"]], on=Col.ID, how="left"
    )
    table = table.merge(
        results[[Col.ID, Col.DFT_STATUS, Col.REASON, Col.E_HULL_DFT]], on=Col.ID, how="left"
    )
    first = HullSummary.read(files.hull_dir / HULL_SUMMARY)
    versions = {m.label: m.mlip_version for m in committee.members}
    versions[MLIPS[0]] = first.mlip_version
    return table.assign(model=root.name, cp2k_wall_s=None if args.collect_only else wall), versions


def scores(table: pd.DataFrame, rule: StabilityRule) -> dict[str, Any]:
    """Differences and verdict scores of every MLIP against CP2K, each on the rows both
    placed (the candidates have two elements or more, so the rule's thresholds decide)."""
    placed = table[(table[Col.DFT_STATUS] == "completed") & table[Col.E_HULL_DFT].notna()]
    out: dict[str, Any] = {"n_placed": len(placed)}
    for name in MLIPS:
        both = placed[placed[f"e_hull_{name}"].notna()]
        mlip, dft = both[f"e_hull_{name}"].astype(float), both[Col.E_HULL_DFT].astype(float)
        out[name] = {
            "difference": e_hull_difference(mlip.to_numpy(), dft.to_numpy()),
            "stable": verdict_scores(
                mlip < rule.stable_below, dft < rule.stable_below, both["weight"]
            ),
            "metastable": verdict_scores(
                mlip < rule.metastable_below, dft < rule.metastable_below, both["weight"]
            ),
        }
    return out


def markdown(result: dict[str, Any], table: pd.DataFrame) -> str:
    """The record as a page."""
    machine, s = result["machine"], result["scores"]
    n_large = int(table.groupby("model")["n_large_phase"].first().sum())
    lines = [
        "# MLIP vs DFT: CHGNet and SevenNet E_hull against CP2K on the same competing phases",
        "",
        f"{machine['date_utc']} UTC, `{result['command']}`; {machine['cpu']}, "
        f"{machine['cores']} cores, load {machine['load_average']} at the start, "
        f"{result['load_average_end']} at the end; {result['wall_s']:.0f} s in all.",
        "",
        f"DFT: {result['dft']}; one attempt per calculation with at most "
        f"{result['max_errors']} custodian correction(s), stopped after "
        f"{result['wall_time_s']:.0f} s. "
        f"Candidates: CHGNet-relaxed V.U.N. crystals of `{result['run']}` "
        f"(≤ {result['max_atoms']} atoms, CP2K-covered elements, no competing phase over "
        f"{result['max_phase_atoms']} atoms ({n_large} left out for one)"
        + (
            ", none CP2K would spin-polarize: its spin-polarized SCF does not converge in "
            "these settings yet"
            if result["closed_shell_only"]
            else ""
        )
        + "): every CHGNet-metastable one "
        f"plus up to {result['others']} drawn at random from the rest per model (recall "
        "weights the drawn ones by their draw fraction). "
        f"{s['n_placed']} of {len(table)} placed by CP2K; the rest are listed below with "
        "the reason."
        + (
            " Scored with `--collect-only`: the calculations ran in earlier runs of this "
            "command; any not finished are listed with their status."
            if result["collect_only"]
            else ""
        ),
        "",
        "| MLIP | n | median ΔE_hull | median abs | p95 abs | mean | "
        f"abs > {WILD_DIFFERENCE:g} | stable TP/FP/FN/TN | stable precision "
        "| stable recall | metastable TP/FP/FN/TN | metastable precision | metastable recall |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    for name in MLIPS:
        d, st, me = s[name]["difference"], s[name]["stable"], s[name]["metastable"]
        nan = float("nan")
        lines.append(
            f"| {name} | {d['n']} | {d.get('median', nan):+.3f} | "
            f"{d.get('median_abs', nan):.3f} | {d.get('p95_abs', nan):.3f} | "
            f"{d.get('mean', nan):+.3f} | {d.get('n_wild', 0)} | "
            f"{st['tp']}/{st['fp']}/{st['fn']}/{st['tn']} | {pct(st['precision'])} | "
            f"{pct(st['recall'])} | {me['tp']}/{me['fp']}/{me['fn']}/{me['tn']} | "
            f"{pct(me['precision'])} | {pct(me['recall'])} |"
        )
    placed = table[table[Col.E_HULL_DFT].notna()]
    wild = {
        name: placed[
            far_apart(placed[f"e_hull_{name}"].to_numpy(), placed[Col.E_HULL_DFT].to_numpy())
        ]
        for name in MLIPS
    }
    lines += [
        "",
        "ΔE_hull = E_hull(MLIP) − E_hull(CP2K), eV/atom. Read the median and the percentile: "
        f"a crystal whose E_hull the MLIP and CP2K place more than {WILD_DIFFERENCE:g} eV/atom "
        "apart moves the mean by its share of that ("
        + "; ".join(
            f"{name}: " + (", ".join(f"{r.formula} ({r.id})" for r in rows.itertuples()) or "none")
            for name, rows in wild.items()
        )
        + "). The CP2K hull holds only each "
        "candidate's competing phases on CHGNet's hull (its decomposition and its elements' "
        "ground states), recomputed with CP2K: a phase CHGNet misplaces above its hull is not "
        "among them, so CP2K's E_hull can be too low by that much. CP2K PBE without +U is not "
        "Materials Project's GGA(+U) with corrections: this is agreement with one DFT, not "
        "with MP's hull. Published (against MP's DFT): CHGNet: "
        f"{result['published']['chgnet']}; SevenNet-0: {result['published']['sevennet']}.",
        "",
        "| model | id | formula | atoms | CHGNet | SevenNet | CP2K | CP2K outcome |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in table.itertuples():
        cp2k = getattr(row, Col.E_HULL_DFT)
        outcome = getattr(row, Col.DFT_STATUS)
        reason = str(getattr(row, Col.REASON) or "")
        lines.append(
            f"| {row.model} | {row.id} | {row.formula} | {row.n_atoms} | "
            f"{row.e_hull_chgnet:+.3f} | {row.e_hull_sevennet:+.3f} | "
            + ("" if pd.isna(cp2k) else f"{cp2k:+.3f}")
            + f" | {outcome}{': ' + reason.splitlines()[0][:120] if reason else ''} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO_ROOT / "runs" / "leaderboard")
    parser.add_argument("--models", nargs="+", default=["symadit", "mcflow"])
    parser.add_argument("--max-atoms", type=int, default=12)
    parser.add_argument("--others", type=int, default=6)
    parser.add_argument(
        "--max-phase-atoms",
        type=int,
        default=24,
        help="leave out candidates whose CP2K hull would recompute a larger competing phase "
        "(on 2026-12-07 three phases of 12-48 atoms ran past the 12-minute wall time)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--results-name",
        default="mlip_vs_dft",
        help="record name in benchmarks/results (the report cites mlip_vs_dft)",
    )
    parser.add_argument(
        "--carry",
        type=Path,
        default=REPO_ROOT / "benchmarks" / "results" / "mlip_vs_dft_calcs",
        help="archives of completed calculations added before and written after the run",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-errors",
        type=int,
        default=1,
        help="custodian corrections per calculation (the product's default is 3: a magnetic "
        "oxide that never converges costs ~11 min per 100 SCF steps here)",
    )
    parser.add_argument(
        "--wall-time",
        type=float,
        default=720.0,
        help="seconds a calculation may run (a spin-polarized metal can spend ~50 min on "
        "100 SCF steps that do not converge)",
    )
    parser.add_argument(
        "--closed-shell-only",
        action="store_true",
        help="leave out candidates CP2K would spin-polarize (spin: auto): on 2026-12-07 none "
        "of six (ZnNi, Cu3Ni, CoNi2Sn, CoPPt, H2W2SeS2, CsWI6) converged its SCF",
    )
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="start no CP2K calculation: score what earlier runs of this command computed",
    )
    args = parser.parse_args()
    machine = machine_info()
    config = load_config(str(args.run / "config.yaml"), PipelineConfig)
    screen = ScreenSettings(
        mlip=config.mlip,
        relax=RelaxConfig(**{**config.relax.model_dump(), "scheduler": "serial"}),
        hull=config.hull,
        stability=config.stability,
        committee=CommitteeConfig(members=[CommitteeMember(mlip=MLIPConfig(name="sevennet"))]),
    )
    dft = DftStageConfig(
        mode="cp2k",
        cp2k=Cp2kSettings(max_errors=args.max_errors),
        cp2k_run=Cp2kStageConfig(workers=args.workers, max_attempts=1, wall_time_s=args.wall_time),
    )
    start = time.perf_counter()
    carried = {m: WORK / m / "cp2k" for m in args.models} | {"references": dft.cp2k_run.references}
    for name, workdir in carried.items():
        if (archive := args.carry / f"{name}.tar.xz").is_file():
            print(f"{name}: {len(import_completed(archive, workdir))} calculations carried in")
    rounds = [args.run / "round-1" / m for m in args.models]
    try:
        calibrated = [calibrate(root, screen, dft, args) for root in rounds]
    finally:  # what is computed is carried, however the run ends
        carry_run(args.run, args.models, args.max_atoms, args.carry / "run")
        for name, workdir in carried.items():
            if workdir.is_dir():
                packed = export_completed(workdir, args.carry / f"{name}.tar.xz", dft.cp2k)
                print(f"{name}: {len(packed)} completed calculations packed")
    table = pd.concat([rows for rows, _ in calibrated], ignore_index=True)
    versions = calibrated[0][1]
    if any(v != versions for _, v in calibrated) or set(versions) != set(MLIPS):
        raise SystemExit(f"the models were screened by other MLIPs: {[v for _, v in calibrated]}")
    result = {
        "command": "python -m benchmarks.mlip_vs_dft " + " ".join(sys.argv[1:]),
        "machine": machine,
        "run": str(args.run),
        "dft": dft.describe(),
        "max_atoms": args.max_atoms,
        "others": args.others,
        "max_phase_atoms": args.max_phase_atoms,
        "max_errors": args.max_errors,
        "wall_time_s": args.wall_time,
        "closed_shell_only": args.closed_shell_only,
        "collect_only": args.collect_only,
        "mlip_versions": versions,
        "scores": scores(table, config.stability),
        "published": {
            "chgnet": published_figures(config.mlip),
            "sevennet": published_figures(MLIPConfig(name="sevennet")),
        },
        "rows": table.to_dict("records"),
        "wall_s": time.perf_counter() - start,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(save_results(args.results_name, result, markdown(result, table)))


if __name__ == "__main__":
    main()
