"""The benchmark row: both models' funnel through the MLIP screen on the papers' hull.

Runs the real ``discovery_flow`` on ``configs/benchmark.yaml`` (MP-20 ``train_partial`` as
the training and novelty set, CHGNet, the shipped papers'-hull table, an unbiased ``random``
draw of the V.U.N. crystals for relaxation, no DFT) with the given checkpoints instead of
training, and writes the report's S.U.N. (MLIP) and M.S.U.N. (MLIP) rows with counts,
intervals and hull coverage beside the papers' DFT values.

With ``--loop`` it instead runs ``--rounds`` rounds twice in one command, without and with
fine-tuning between rounds (``loop.evidence: mlip``: no DFT here, so the crystals the MLIP
hull places (meta)stable are what the loop learns from), and records the V.U.N. fraction
and the MLIP-stable share of V.U.N. per model and round for both.

Usage (repository root)::

    .venv/bin/python -m benchmarks.sun_mlip_benchmark \
        --symadit runs/symadit_benchmark/symadit.pt --mcflow CKPT --n-samples 1000
    .venv/bin/python -m benchmarks.sun_mlip_benchmark --loop --rounds 3 \
        --symadit ... --mcflow ... --n-samples 300 --max-relax 60
    .venv/bin/python -m benchmarks.sun_mlip_benchmark --no-published \
        --samples benchmarks/results/leaderboard_samples --run-prefix leaderboard

Writes ``benchmarks/results/sun_mlip_benchmark.{json,md}`` (``loop_benchmark`` with
``--loop``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import yaml

from benchmarks.machine import RESULTS_DIR, machine_info, save_results
from tasks.core.paths import REPO_ROOT

#: The papers' DFT-checked MP-20 figures (``../shared/docs/evaluation.md``, methods.md).
PAPER = {
    "symadit": {"S.U.N.": "5.53 (12 of 100 DFT-checked)", "M.S.U.N.": "13.82 (30 of 100)"},
    "mcflow": {"S.U.N.": "not reported", "M.S.U.N.": "not reported"},
    "DiffCSP": {
        "S.U.N.": "7.09 (8 of 100, other samples)",
        "M.S.U.N.": "16.84 (19 of 100, other samples)",
    },
}
NOT_REPORTED = {"S.U.N.": "not reported", "M.S.U.N.": "not reported"}


def benchmark_profile(args: argparse.Namespace, out: Path) -> Path:
    """``configs/benchmark.yaml`` with the checkpoints and sizes of this run, written to ``out``.

    Our models sample ``n_samples`` from the given checkpoints; the profile's published sets
    (``samples`` entries) keep their first ``n_samples`` crystals, or are left out with
    ``--no-published``. With ``--samples DIR`` our models' entries read the samples an earlier
    run kept (:func:`kept_samples`, e.g. ``benchmarks/results/leaderboard_samples``) under
    the model's name instead of sampling a checkpoint, so that run's screen can be rebuilt
    without its checkpoints.
    """
    profile = yaml.safe_load((REPO_ROOT / "configs" / "benchmark.yaml").read_text())
    # the graph reads only the training set (val and test would be ingested for nothing)
    profile["datasets"] = {"train": profile["datasets"]["train"]}
    checkpoints = {"symadit": args.symadit, "mcflow": args.mcflow}
    models = []
    for m in profile["models"]:
        if m["name"] == "samples":
            if not args.no_published:
                models.append({**m, "limit": args.n_samples})
        elif args.samples is not None:
            kept = str(kept_samples(args.samples, m["name"]).resolve())
            models.append(
                {"name": "samples", "path": kept, "label": m["name"], "limit": args.n_samples}
            )
        elif checkpoints[m["name"]] is not None:
            ckpt = str(Path(checkpoints[m["name"]]).resolve())
            models.append({**m, "checkpoint": ckpt, "n_samples": args.n_samples})
    profile["models"] = models
    profile["selection"]["max_relax"] = args.max_relax
    profile["dask"] = {**profile.get("dask", {}), "n_workers": args.workers}
    profile["evaluate"]["workers"] = args.workers
    profile["profile"] = out.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


def run_flow(profile: Path, run_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """One ``discovery_flow`` run on a temporary Prefect server; its result and wall time."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.discovery import discovery_flow

    with prefect_test_harness(server_startup_timeout=300):
        start = time.perf_counter()
        result = discovery_flow(profile=str(profile), run_id=run_id, overrides=overrides)
        result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def unflagged_rates(round_dir: Path) -> dict[str, Any]:
    """S.U.N. / M.S.U.N. (MLIP) counting only (meta)stable candidates that carry no flag, and
    also only those that are not a known phase of the hull's reference sets.

    The report counts every candidate the MLIP hull places (meta)stable and flags the
    doubtful ones beside it; this is the stricter reading of the same round files, with the
    report's funnel (:func:`tasks.pipeline.selection.evaluation_funnel`) and statistic
    (:func:`tasks.pipeline.sun.funnel_rate`). Novelty follows the papers (the training set),
    so a generator trained on more of MP-20 than the partial training set here has "novel"
    crystals that are known MP-20 phases; relaxed, they land a few meV below the single-point
    hull and count as stable. The "not known" columns leave them out.
    """
    import pandas as pd

    from tasks.core.columns import Col
    from tasks.pipeline.selection import evaluation_funnel
    from tasks.pipeline.summary import RoundFiles
    from tasks.pipeline.sun import FunnelStage, estimate_as_dict, funnel_rate

    files = RoundFiles(round_dir)
    funnel = evaluation_funnel(pd.read_parquet(files.verdicts))
    hull = pd.read_parquet(files.hull)
    known_ids = pd.read_parquet(files.verdicts, columns=[Col.ID, Col.KNOWN])
    known = hull[Col.ID].isin(known_ids.loc[known_ids[Col.KNOWN].fillna(False), Col.ID])
    clean = ~hull[Col.FLAGGED].astype(bool)
    out: dict[str, Any] = {"checked": len(hull), "flagged": int((~clean).sum())}
    for label, column in (("S.U.N.", Col.STABLE), ("M.S.U.N.", Col.METASTABLE)):
        hit = hull[column].fillna(False).astype(bool)
        out[f"{label} flagged"] = int((hit & ~clean).sum())
        out[f"{label} known"] = int((hit & known).sum())
        kinds = (("unflagged", hit & clean), ("unflagged, not known", hit & clean & ~known))
        for name, kept in kinds:
            stage = FunnelStage(f"MLIP {column}, {name}", int(kept.sum()), len(hull))
            out[f"{label} (MLIP, {name})"] = estimate_as_dict(
                funnel_rate(f"{label} (MLIP, {name})", [*funnel, stage])
            )
    return out


def _cell(metrics: dict[str, Any], key: str, name: str | None) -> str:
    e = metrics.get(key) if name is None else metrics.get(key, {}).get(name)
    if e is None:
        return "—"
    return f"{e['paper']} of {e['checked']} [{e['low']:.2f}–{e['high']:.2f}]"


def row_markdown(header: list[str], result: dict[str, Any], args: argparse.Namespace) -> str:
    """The S.U.N. (MLIP) row per model beside the papers' DFT values, then the run's report."""
    lines = [*header, "", "| model | S.U.N. (MLIP) | of which flagged / known | "
             "S.U.N. (MLIP), unflagged | S.U.N. (MLIP), unflagged, not known | "
             "M.S.U.N. (MLIP) | of which flagged / known | M.S.U.N. (MLIP), unflagged | "
             "M.S.U.N. (MLIP), unflagged, not known | paper S.U.N. (DFT) | paper M.S.U.N. (DFT) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for model in result["unflagged"]:
        key = f"{model}/round1"
        strict = result["unflagged"][model]
        paper = PAPER.get(model, NOT_REPORTED)
        cells = [model]
        for label in ("S.U.N.", "M.S.U.N."):
            cells += [
                _cell(result["metrics"], key, f"{label} (MLIP)"),
                f"{strict[f'{label} flagged']} / {strict.get(f'{label} known', '—')}",
                _cell(strict, f"{label} (MLIP, unflagged)", None),
                _cell(strict, f"{label} (MLIP, unflagged, not known)", None),
            ]
        lines.append("| " + " | ".join([*cells, paper["S.U.N."], paper["M.S.U.N."]]) + " |")
    lines += [
        "",
        "Cells: percent (count) of the checked candidates, then [95 % interval, percent]. "
        "MLIP figures are CHGNet relaxations on the papers' hull (the shipped CHGNet table of "
        "every MP-20 and MPTS-52 phase), not DFT: they are not the papers' numbers and only "
        f"sit beside them. {args.max_relax} V.U.N. crystals per model were drawn at random and "
        "relaxed; S.U.N. is the product of the funnel's fractions. 'Of which flagged': "
        "(meta)stable candidates the report flags (a sub-system without reference phases, a "
        "relaxation that did not converge, E_hull below -0.2 eV/atom); the unflagged columns "
        "count only the others. 'Known': (meta)stable candidates that are a phase of the "
        "hull's reference sets (every MP-20 / MPTS-52 phase); novelty is judged against the "
        "training set as in the papers, so a generator trained on more of MP-20 than this "
        "partial training set brings known phases as 'novel' (they relax a few meV below the "
        "single-point hull and count as stable); the 'not known' columns leave them out too.",
        "",
        "## The run's report",
        "",
        result["markdown"],
    ]
    return "\n".join(lines) + "\n"


def loop_markdown(header: list[str], results: dict[str, dict[str, Any]]) -> str:
    """Per model and round, with and without fine-tuning: V.U.N. and MLIP-stable share."""
    lines = [*header, "", "| model | round | fine-tuning | V.U.N. | MLIP stable / V.U.N. |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for variant, result in results.items():
        for key in sorted(result["metrics"]):
            model, rnd = key.split("/round")
            m = result["metrics"]
            lines.append(
                f"| {model} | {rnd} | {variant} | {_cell(m, key, 'V.U.N.')} | "
                f"{_cell(m, key, 'MLIP stable / V.U.N.')} |"
            )
    lines += ["", *(f"- {v}: run `{r['run_id']}`, {r['wall_s']:.0f} s" for v, r in results.items())]
    return "\n".join(lines) + "\n"


def record_row(
    run_dir: Path,
    wall_s: float,
    header: list[str],
    args: argparse.Namespace,
    started: dict[str, Any],
) -> None:
    """Write ``sun_mlip_benchmark.{json,md}`` from a finished run directory."""
    import json

    result: dict[str, Any] = {
        "metrics": json.loads((run_dir / "metrics.json").read_text()),
        "markdown": (run_dir / "report" / "report.md").read_text(),
        "unflagged": {
            m.name: unflagged_rates(m)
            for m in sorted((run_dir / "round-1").iterdir())
            if (m / "mlip" / "hull" / "hull.parquet").exists()
        },
    }
    header = [*header, f"- wall time: {wall_s:.0f} s; run `{run_dir.relative_to(REPO_ROOT)}`"]
    if args.samples is None:
        keep_samples(run_dir, args.results_name)
    save_results(
        args.results_name,
        {"metrics": result["metrics"], "unflagged": result["unflagged"], "wall_s": wall_s,
         "paper": PAPER, "profile": yaml.safe_load((run_dir / "config.yaml").read_text()),
         "machine": started},
        row_markdown(header, result, args),
    )  # fmt: skip


def keep_samples(run_dir: Path, name: str) -> None:
    """Copy our models' samples next to the record, so its figures can be measured again (at
    another tolerance, with another MLIP: ``--samples``) without retraining.

    ``<model>.parquet`` is the sampling table, one row per sample requested, failed ones with
    their reason, so validity measured again counts them; ``<model>.extxyz`` holds the
    crystals alone, for other programs.
    """
    import shutil

    folder = RESULTS_DIR / f"{name}_samples"
    for model in ("symadit", "mcflow"):
        for kept in ("samples.parquet", "samples.extxyz"):
            samples = run_dir / "round-1" / model / "samples" / kept
            if samples.is_file():
                folder.mkdir(exist_ok=True)
                shutil.copyfile(samples, folder / f"{model}{samples.suffix}")


def kept_samples(folder: Path, model: str) -> Path:
    """A model's samples kept by :func:`keep_samples`: the sampling table when there is one
    (failed samples count in validity), else the crystals' extxyz (a record kept before the
    table was: its failed samples are not in it, so validity is over the crystals alone)."""
    for path in (folder / f"{model}.parquet", folder / f"{model}.extxyz"):
        if path.is_file():
            return path
    raise SystemExit(f"--samples {folder}: no {model}.parquet or {model}.extxyz there")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symadit", type=Path, default=None, help="SymADiT checkpoint")
    parser.add_argument("--mcflow", type=Path, default=None, help="MCFlow checkpoint")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument(
        "--samples",
        type=Path,
        default=None,
        help="screen our models' kept samples (DIR/<model>.parquet, else DIR/<model>.extxyz) "
        "instead of sampling checkpoints",
    )
    parser.add_argument("--max-relax", type=int, default=200, help="V.U.N. drawn for the MLIP")
    parser.add_argument("--loop", action="store_true", help="rounds without / with fine-tuning")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument(
        "--discovered-weight", type=int, default=1, help="copies of each found crystal"
    )
    parser.add_argument("--run-prefix", default="sun-mlip")
    parser.add_argument("--workers", type=int, default=2, help="Dask and matcher processes")
    parser.add_argument(
        "--no-published", action="store_true", help="leave out the profile's published sets"
    )
    parser.add_argument("--results-name", default="sun_mlip_benchmark")
    parser.add_argument(
        "--rewrite-record",
        action="store_true",
        help="rewrite the record from the finished run (keeps its machine, date and wall time)",
    )
    args = parser.parse_args()
    if args.samples is None and args.symadit is None and args.mcflow is None:
        parser.error("give --symadit and/or --mcflow checkpoints, or --samples")
    if args.samples is not None and (args.symadit or args.mcflow or args.loop):
        parser.error("--samples screens kept samples: no checkpoint to sample, no loop to train")
    started = machine_info()
    if args.rewrite_record:
        previous = json.loads((RESULTS_DIR / f"{args.results_name}.json").read_text())
        started = previous["machine"]
    profile = benchmark_profile(args, REPO_ROOT / "runs" / "profiles" / f"{args.run_prefix}.yaml")
    header = [
        f"# {'Loop' if args.loop else 'MLIP S.U.N.'} benchmark (benchmark profile, MP-20)",
        "",
        f"- date (UTC): {started['date_utc']}; machine: {started['cpu']}, {started['cores']} "
        f"cores; load average at start: {started['load_average']}",
        f"- profile: `configs/benchmark.yaml` with `{profile.relative_to(REPO_ROOT)}`'s "
        + ("checkpoints" if args.samples is None else f"samples from `{args.samples}`")
        + f"; {args.n_samples} samples per model; {args.max_relax} V.U.N. relaxed; "
        f"{args.workers} worker process(es)",
    ]
    if not args.loop:
        if args.rewrite_record:
            wall_s = previous["wall_s"]
        else:
            wall_s = run_flow(profile, args.run_prefix, {})["wall_s"]
        record_row(REPO_ROOT / "runs" / args.run_prefix, wall_s, header, args, started)
        return
    results = {}
    for finetune in (False, True):
        overrides = {"rounds": args.rounds, "loop.finetune": finetune, "loop.evidence": "mlip",
                     "loop.steps": args.finetune_steps,
                     "loop.discovered_weight": args.discovered_weight}  # fmt: skip
        name = "on" if finetune else "off"
        results[name] = run_flow(profile, f"{args.run_prefix}-loop-{name}", overrides)
    header.append(
        f"- {args.rounds} rounds each; fine-tuning `loop: {{steps: {args.finetune_steps}, "
        f"discovered_weight: {args.discovered_weight}, evidence: mlip}}` (the MLIP-stable "
        "crystals are what the loop learns from: no DFT here)"
    )
    save_results(
        "loop_benchmark",
        {v: {"metrics": r["metrics"], "wall_s": r["wall_s"]} for v, r in results.items()}
        | {"machine": started, "profile": yaml.safe_load(profile.read_text())},
        loop_markdown(header, results),
    )


if __name__ == "__main__":
    main()
