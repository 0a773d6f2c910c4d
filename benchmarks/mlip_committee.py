"""What a second MLIP changes: CHGNet vs SevenNet verdicts on a finished run's candidates.

Run from the repository root (after a S.U.N. benchmark run, e.g. the leaderboard's)::

    .venv/bin/python -m benchmarks.mlip_committee --run runs/leaderboard

For every model (and samples file) of the run's round 1, the committee stage
(:func:`tasks.mlip.committee.run_committee`) takes the candidates CHGNet relaxed and placed
on its hull and lets SevenNet judge them at CHGNet's geometry on SevenNet's own hull (single
points of the papers' hull phases in the candidates' chemical systems, cached under
``data/cache/mlip_committee/``, cleared at the start so the cost is a cold one: SevenNet's
single points of the candidates and of their reference phases). Recorded per model: the
confusion matrix of the two MLIPs' stable and metastable verdicts, the E_hull difference
(median, median absolute, 95th percentile of the absolute, and every case above 1 eV/atom),
SevenNet's cost per candidate, and S.U.N. / M.S.U.N. (MLIP) for CHGNet alone, SevenNet
alone and the committee (both must agree), all and unflagged, with counts and 95 % intervals.
Writes ``benchmarks/results/mlip_committee.{json,md}`` (``--results-name``). ``--relax-steps
N`` lets SevenNet take N FIRE steps from CHGNet's geometry instead of a single point,
``--hull table`` reads SevenNet's references from its shipped table, ``--models`` limits the
generators.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd

from benchmarks.machine import machine_info, save_results
from tasks.core.columns import Col
from tasks.core.config import load_config
from tasks.core.paths import REPO_ROOT
from tasks.core.stability import e_hull_difference, far_apart
from tasks.mlip.committee import run_committee
from tasks.mlip.settings import (
    CommitteeConfig,
    CommitteeMember,
    MLIPConfig,
    MLIPHullConfig,
    RelaxConfig,
    ScreenSettings,
)
from tasks.pipeline.config import PipelineConfig
from tasks.pipeline.selection import evaluation_funnel
from tasks.pipeline.summary import RoundFiles
from tasks.pipeline.sun import FunnelStage, RateEstimate, estimate_as_dict, stability_estimates

CACHE = REPO_ROOT / "data" / "cache" / "mlip_committee"


def confusion(first: pd.Series, second: pd.Series) -> dict[str, int]:
    """Counts of (first, second) verdict pairs."""
    return {
        "both": int((first & second).sum()),
        "first_only": int((first & ~second).sum()),
        "second_only": int((~first & second).sum()),
        "neither": int((~first & ~second).sum()),
    }


def rates(
    verdicts: pd.DataFrame,
    stable: pd.Series,
    metastable: pd.Series,
    flagged: pd.Series,
    label: str,
    seed: int,
) -> list[RateEstimate]:
    """S.U.N. / M.S.U.N. of one MLIP's (or the committee's) verdicts on every checked
    candidate, over all of them and counting only the unflagged ones."""
    n, funnel = len(stable), evaluation_funnel(verdicts)
    out = []
    for suffix, keep in (("", pd.Series(True, index=stable.index)), (", unflagged", ~flagged)):
        s = FunnelStage(f"stable ({label})", int((stable & keep).sum()), n)
        m = FunnelStage(f"metastable ({label})", int((metastable & keep).sum()), n)
        out += stability_estimates(funnel, s, m, label + suffix, True, seed)
    return out


def judge(root: Path, screen: ScreenSettings, seed: int) -> dict[str, Any]:
    """The committee on one model's round; its figures."""
    files = RoundFiles(root)
    relaxed, first = pd.read_parquet(files.relaxed), pd.read_parquet(files.hull)
    start = time.perf_counter()
    rows, summary = run_committee(relaxed, first, screen, CACHE / root.name)
    wall = time.perf_counter() - start
    both = rows[rows["e_hull_chgnet"].notna() & rows["e_hull_sevennet"].notna()]
    wild = both[far_apart(both["e_hull_sevennet"].to_numpy(), both["e_hull_chgnet"].to_numpy())]
    verdicts = pd.read_parquet(files.verdicts)
    member = pd.read_parquet(CACHE / root.name / "members" / "sevennet" / "hull.parquet")
    member_flagged = rows[Col.ID].map(member.set_index(Col.ID)[Col.FLAGGED]).fillna(True)
    estimates = [
        *rates(verdicts, first[Col.STABLE], first[Col.METASTABLE], first[Col.FLAGGED],
               "MLIP chgnet", seed),
        *rates(verdicts, rows["stable_sevennet"], rows["metastable_sevennet"],
               member_flagged.astype(bool), "MLIP sevennet", seed),
        *rates(verdicts, rows[Col.STABLE], rows[Col.METASTABLE], rows[Col.FLAGGED],
               "MLIP committee", seed),
    ]  # fmt: skip
    return {
        "model": root.name,
        "n_candidates": len(rows),
        "n_placed_by_both": len(both),
        "stable": confusion(both["stable_chgnet"], both["stable_sevennet"]),
        "metastable": confusion(both["metastable_chgnet"], both["metastable_sevennet"]),
        "e_hull_difference": {
            **e_hull_difference(
                both["e_hull_sevennet"].to_numpy(), both["e_hull_chgnet"].to_numpy()
            ),
            "wild": [
                {"id": i, "formula": f, "chgnet": float(a), "sevennet": float(b), "flags": t}
                for i, f, a, b, t in zip(
                    wild[Col.ID],
                    wild[Col.FORMULA],
                    wild["e_hull_chgnet"],
                    wild["e_hull_sevennet"],
                    wild[Col.FLAGS],
                    strict=True,
                )
            ],  # the first MLIP's relaxation failed there: both values are meaningless
        },
        "sevennet_wall_s": wall,
        "sevennet_s_per_candidate": wall / max(len(rows), 1),
        "committee": summary.model_dump(mode="json"),
        "rates": [estimate_as_dict(e) for e in estimates],
    }


def markdown(result: dict[str, Any]) -> str:
    """The record as a human-readable page."""
    machine = result["machine"]
    lines = [
        "# MLIP committee: CHGNet vs SevenNet on the same candidates",
        "",
        f"{machine['date_utc']} UTC, `{result['command']}`; {machine['cpu']}, "
        f"{machine['cores']} cores, load {machine['load_average']} at the start, "
        f"{result['load_average_end']} at the end; {result['wall_s']:.0f} s in all.",
        f"Candidates: the V.U.N. crystals of `{result['run']}` round 1 that CHGNet relaxed "
        "(a random draw per model, the run's S.U.N. protocol); SevenNet (7net-0) "
        + (
            f"takes up to {result['relax_steps']} FIRE steps from CHGNet's geometry"
            if result.get("relax_steps")
            else "takes a single point at CHGNet's geometry"
        )
        + " and judges on its own hull (SevenNet "
        + ("table" if result.get("hull") == "table" else "single points")
        + " of the papers' hull phases in each candidate's systems). Stable: E_hull < 0, "
        "metastable: < 0.1 eV/atom, ≥ 2 elements; committee = both agree.",
        "",
        "| model | candidates | stable: both / CHGNet only / SevenNet only / neither "
        "| metastable: both / CHGNet only / SevenNet only / neither "
        "| ΔE_hull (SevenNet − CHGNet) median / median abs / p95 abs, eV/atom "
        "| abs ΔE_hull > 1 eV/atom | SevenNet s per candidate (cold, with its references) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["models"]:
        s, m, d = r["stable"], r["metastable"], r["e_hull_difference"]
        lines.append(
            f"| {r['model']} | {r['n_placed_by_both']} of {r['n_candidates']} | "
            f"{s['both']} / {s['first_only']} / {s['second_only']} / {s['neither']} | "
            f"{m['both']} / {m['first_only']} / {m['second_only']} / {m['neither']} | "
            f"{d['median']:+.3f} / {d['median_abs']:.3f} / {d['p95_abs']:.3f} | "
            f"{d['n_wild']} | {r['sevennet_s_per_candidate']:.2f} |"
        )
    lines += [
        "",
        "| model | rate | % | count / checked | 95 % interval |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in result["models"]:
        for e in r["rates"]:
            lines.append(
                f"| {r['model']} | {e['name']} | {e['percent']:.2f} | {e['count']} / "
                f"{e['checked']} | {e['low']:.2f}–{e['high']:.2f} |"
            )
    wild = [w for r in result["models"] for w in r["e_hull_difference"]["wild"]]
    if wild:
        lines += [
            "",
            f"Differences above 1 eV/atom ({len(wild)}; CHGNet's own E_hull there is "
            f"{min(w['chgnet'] for w in wild):+.1f} to {max(w['chgnet'] for w in wild):+.1f} "
            f"eV/atom and {sum('did not converge' in w['flags'] for w in wild)} of these "
            "relaxations did not converge: a single point at such a geometry means nothing; "
            "none is stable for the committee, and the "
            f"{sum(w['sevennet'] < 0 for w in wild)} SevenNet puts below its hull count in "
            "SevenNet's all-candidates figure, each flagged 'far below the known hull', so not "
            "in its unflagged one): "
            + "; ".join(
                f"{w['id']} {w['formula']}: CHGNet {w['chgnet']:+.2f}, SevenNet "
                f"{w['sevennet']:+.4g} eV/atom"
                for w in wild
            )
            + ". The unflagged rows leave out every flagged crystal (a member's own flags, and "
            "for the committee its disagreements).",
        ]
    lines += [
        "",
        "Published Matbench Discovery F1 (unique prototypes): CHGNet 0.613 (precision 0.514), "
        "SevenNet-0 0.724. MLIP verdicts, not DFT.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO_ROOT / "runs" / "leaderboard")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--relax-steps", type=int, default=0, help="SevenNet FIRE steps from CHGNet's geometry"
    )
    parser.add_argument("--models", nargs="*", help="only these generators of the run")
    parser.add_argument(
        "--hull", default="single_point", help="SevenNet's reference energies: single_point | table"
    )
    parser.add_argument("--results-name", default="mlip_committee")
    args = parser.parse_args()
    machine = machine_info()
    config = load_config(str(args.run / "config.yaml"), PipelineConfig)
    relax = RelaxConfig(
        **{**config.relax.model_dump(), "scheduler": "process", "n_workers": args.workers}
    )
    member = CommitteeMember(
        mlip=MLIPConfig(name="sevennet"),
        hull=MLIPHullConfig(energies=args.hull, cache_dir=CACHE / "hull"),
        relax_steps=args.relax_steps,
    )
    screen = ScreenSettings(
        mlip=config.mlip,
        relax=relax,
        hull=config.hull,
        stability=config.stability,
        committee=CommitteeConfig(members=[member]),
    )
    shutil.rmtree(CACHE, ignore_errors=True)  # cold: the cost includes SevenNet's references
    start = time.perf_counter()
    rounds = sorted(
        p
        for p in (args.run / "round-1").iterdir()
        if RoundFiles(p).hull.is_file() and (not args.models or p.name in args.models)
    )
    models = [judge(root, screen, args.seed) for root in rounds]
    result = {
        "command": "python -m benchmarks.mlip_committee " + " ".join(sys.argv[1:]),
        "machine": machine,
        "run": str(args.run),
        "models": models,
        "relax_steps": args.relax_steps,
        "hull": args.hull,
        "wall_s": time.perf_counter() - start,
        "load_average_end": [round(v, 2) for v in os.getloadavg()],
    }
    print(save_results(args.results_name, result, markdown(result)))


if __name__ == "__main__":
    main()
