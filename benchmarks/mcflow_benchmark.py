"""MCFlow benchmark: train ``cpu-small`` on MP-20 train_partial, then CSP / DNG / step sweep.

Usage::

    .venv/bin/python benchmarks/mcflow_benchmark.py --train-minutes 15 --n-test 500

Stages (each cached under ``data/cache/mcflow_benchmark/`` so a rerun skips finished work):

1. prepare: MP-20 ``train_partial`` and ``test`` CSVs through the product's ingestion
   (:func:`tasks.ingest.run.ingest_source`: its sanity rule, size limit and analysis cache);
2. train: ``configs/mcflow/cpu-small.yaml`` with ``max_time_s`` = ``--train-minutes``,
   through the model registry (the profile is written beside the run);
3. evaluate: CSP match rate / RMSE on ``--n-test`` test compositions (1 sample with noisy
   guidance, 20 samples without), DNG structural / compositional validity and P1 rate on
   ``--n-dng`` samples, a step-count sweep, and sampling throughput.

Writes ``benchmarks/results/mcflow_benchmark.json`` and ``.md``, and the DNG samples (table,
extxyz, one CIF each) to ``dng_samples/`` in the run directory, so every DNG figure traces
back to its crystals.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info, write_profile
from benchmarks.sample_evaluation import evaluate_records, sanity_lines
from models.contract import SampleRequest, TrainedOn, TrainRequest
from models.mcflow.api import load_dataset_items, load_model, split_items
from models.mcflow.config import resolve_config
from models.mcflow.validation import coord_loss_by_time
from models.registry import get_model
from models.sample_output import SampleRecord, write_samples
from models.training.checkpoint import load_checkpoint
from tasks.core.atomic import write_json_atomic, write_text_atomic
from tasks.core.paths import REPO_ROOT, shared_data_dir
from tasks.core.records import load_structures
from tasks.evaluate.csp_metrics import evaluate_csp
from tasks.evaluate.funnel import run_symmetry, run_validity
from tasks.evaluate.settings import CSPConfig, EvaluateConfig
from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.ingest.run import ingest_source

log = logging.getLogger("mcflow_benchmark")
#: The method name of the paper-style row of this benchmark.
LABEL = "MCFlow cpu-small (ours)"
CACHE = REPO_ROOT / "data" / "cache" / "mcflow_benchmark"
RESULTS = REPO_ROOT / "benchmarks" / "results"
PARTIAL = CACHE / "mcflow_benchmark.partial.json"
#: Structure times at which the coordinate loss is reported.
S_VALUES = (0.1, 0.3, 0.5, 0.7, 0.85, 0.95)
PAPER = {
    "csp_mp20_B_1": {"match_rate": 63.14, "rmse": 0.0611},
    "csp_mp20_B_20": {"match_rate": 77.12, "rmse": 0.0439},
    "dng_mp20_B": {"struct_validity": 99.44, "comp_validity": 89.85},
}


# ----------------------------------------------------------------------------- prepare
def prepare(split: str, limit: int | None, workers: int) -> Path:
    """Ingested ``mp_20/<split>`` (its first ``limit`` rows): ``dataset.parquet``."""
    csv = shared_data_dir() / "mp_20" / f"{split}.csv.gz"
    return prepare_csv(csv, f"mp_20/{split}", limit, workers)


def prepare_csv(csv: Path, source: str, limit: int | None, workers: int) -> Path:
    """An MP-20-style CSV through the product's ingestion, into the benchmark's cache."""
    out = CACHE / f"{source.replace('/', '_')}_{limit or 'all'}"
    if not (out / "dataset.parquet").exists():
        config = IngestConfig(n_workers=workers, plots=False)
        ingest_source(DatasetSource(kind="csv", path=csv, name=source, limit=limit), out, config)
    return out / "dataset.parquet"


# ----------------------------------------------------------------------------- metrics
def csp_metrics(
    targets: list[tuple[str, Any]], records: list[Any], k: int, workers: int
) -> dict[str, Any]:
    """:func:`tasks.evaluate.csp_metrics.evaluate_csp` (structurally valid predictions only).

    ``targets`` are the ingested crystals (:func:`csp_targets`); samples of inputs the
    ingestion rejected have no target and are not scored. Match rates are reported in
    percent; ``rmse`` is the best-of-k RMSE over matched targets.
    """
    predictions: dict[str, list[Any]] = {tid: [] for tid, _ in targets}
    for rec in records:
        if rec.extra["source_id"] in predictions:
            predictions[rec.extra["source_id"]].append(
                rec.to_structure() if rec.status == "ok" else None
            )
    config = CSPConfig(k_values=(1, k) if k > 1 else (1,))
    config.matcher.workers = workers
    metrics, _ = evaluate_csp(targets, predictions, config)
    return {
        "k": k,
        "n_compositions": len(targets),
        "match_rate": 100.0 * float(metrics[f"match_rate@{k}"]),
        "rmse": float(metrics[f"rmse@{k}"]),
        "match_rate_k1": 100.0 * float(metrics["match_rate@1"]),
        "rmse_k1": float(metrics["rmse@1"]),
        "metre": 100.0 * float(metrics["metre"]),
        "crmse": float(metrics["crmse"]),
        "n_failed_samples": sum(r.status != "ok" for r in records),
    }


def csp_targets(dataset: Path) -> list[tuple[str, Any]]:
    """``(id, structure)`` of the ingested (``ok``) crystals of a dataset."""
    return list(zip(*load_structures(dataset), strict=True))


def dng_metrics(records: list[Any], workers: int) -> dict[str, float]:
    """Structural / compositional validity (%, over all requested samples) and P1 rate.

    The evaluation suite's own per-crystal rules
    (:func:`tasks.evaluate.funnel.run_validity`, :func:`~tasks.evaluate.funnel.run_symmetry`),
    so these figures equal the full evaluation's: the P1 rate is over the structurally
    valid samples whose symmetry analysis succeeded (pymatgen, at the evaluation's tolerance:
    symprec 0.01 Å, 5° by default, as the papers).
    """
    config = EvaluateConfig(workers=workers)
    structures = [r.to_structure() if r.status == "ok" else None for r in records]
    verdicts = run_validity(structures, config)
    pairs = zip(structures, verdicts, strict=True)
    valid = [s for s, v in pairs if s is not None and v.valid_struct]
    groups = [info.spacegroup for info in run_symmetry(valid, config) if info.spacegroup > 0]
    n = len(records)
    n_atoms = [len(s) for s in structures if s is not None]
    return {
        "n": n,
        "n_failed": sum(s is None for s in structures),
        "struct_validity": 100.0 * len(valid) / n,
        "comp_validity": 100.0 * sum(v.valid_comp for v in verdicts) / n,
        "p1_rate": 100.0 * groups.count(1) / max(len(groups), 1),
        "mean_atoms": float(np.mean(n_atoms)) if n_atoms else float("nan"),
    }


def coord_loss_by_s(checkpoint: Path, dataset: Path, n_val: int = 512) -> dict[str, Any]:
    """:func:`models.mcflow.validation.coord_loss_by_time` on the run's validation split."""
    model, cfg, _ = load_model(checkpoint, "cpu")
    items = load_dataset_items(dataset, cfg.data.max_atoms)
    _, val = split_items(items, cfg.data.val_fraction, cfg.train.seed)
    return coord_loss_by_time(model, val[:n_val], S_VALUES)


# ----------------------------------------------------------------------------- stages
def train_stage(
    dataset: Path, minutes: float, out: Path, which: str
) -> tuple[Path, dict[str, Any]]:
    """Train cpu-small for ``minutes`` (skipped when a finished run exists; ``finished`` is
    when its training ended).

    ``which`` picks the evaluated checkpoint: ``latest`` (the end of the budget, EMA weights)
    or ``best`` (best validation DNG validity on a few dozen samples: noisy, and blind to CSP).
    """
    cfg = resolve_config("cpu-small")
    cfg.train.max_time_s = minutes * 60
    cfg.train.progress = False
    done = out / "done.json"
    if not done.exists():
        start = time.perf_counter()
        request = TrainRequest(
            profile=str(write_profile(cfg, out / "profile.yaml")),
            dataset=dataset,
            out_dir=out,
            resume=(out / "latest.pt").exists(),
        )
        ckpt = get_model("mcflow").train(request)
        write_json_atomic(done, {"checkpoint": str(ckpt), "seconds": time.perf_counter() - start})
    info = json.loads(done.read_text())
    finished = dt.datetime.fromtimestamp(done.stat().st_mtime, dt.UTC)
    info["finished"] = finished.isoformat(timespec="seconds")
    if which == "latest":
        info["checkpoint"] = str(out / "latest.pt")
    info["evaluated"] = which
    lines = [json.loads(x) for x in (out / "metrics.jsonl").open()]
    train_lines = [x for x in lines if x["split"] == "train"]
    last = train_lines[-1]
    trained_on = TrainedOn.from_extra(load_checkpoint(info["checkpoint"])["extra"])
    assert trained_on is not None, "checkpoints of this trainer record their training set"
    info.update(
        steps=last["step"],
        n_train=trained_on.n_train,
        epochs=last["step"] / max(1, trained_on.n_train // cfg.train.batch_size),
        final_train_loss=last["loss"],
        train_crystals_per_s=float(np.mean([x["items_per_s"] for x in train_lines[1:]] or [0])),
        val=[x for x in lines if x["split"] == "val"],
        curve=[{"step": x["step"], "loss": x["loss"]} for x in train_lines],
        config=cfg.model_dump(mode="json"),
    )
    return Path(info["checkpoint"]), info


def timed_sample(checkpoint: Path, **fields: Any) -> tuple[list[SampleRecord], float]:
    """MCFlow samples of a request (through the registry) and their wall time."""
    request = SampleRequest.model_validate({"checkpoint": checkpoint, **fields})
    start = time.perf_counter()
    records = get_model("mcflow").sample(request)
    return records, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-minutes", type=float, default=15.0)
    parser.add_argument("--train-limit", type=int, default=None, help="first N train rows")
    parser.add_argument("--n-test", type=int, default=500)
    parser.add_argument("--n-dng", type=int, default=1000)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--n-test-k", type=int, default=None, help="compositions for k samples")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--sweep", type=int, nargs="*", default=[10, 50, 100, 500])
    parser.add_argument("--sweep-n", type=int, default=100, help="compositions in the sweep")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoint", choices=["latest", "best"], default="latest")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    torch.set_num_threads(args.threads)
    command = "python " + " ".join(sys.argv)
    machine = machine_info()
    results: dict[str, Any] = {
        "benchmark": "mcflow_benchmark",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": {
            **machine,
            "cpu_count": machine["cores"],
            "torch": torch.__version__,
            "threads": args.threads,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "load_average_start": machine["load_average"],
        },
        "paper": PAPER,
    }
    train_ds = prepare("train_partial", args.train_limit, args.workers)
    test_ds = prepare("test", args.n_test, args.workers)
    run = CACHE / f"run_cpu-small_{args.train_minutes:g}min_{args.train_limit or 'all'}"
    ckpt, results["train"] = train_stage(train_ds, args.train_minutes, run, args.checkpoint)
    results["coord_loss_by_s"] = coord_loss_by_s(ckpt, train_ds)
    csp: dict[str, Any] = {}
    recs, secs = timed_sample(ckpt, task="csp", structures=test_ds, steps=args.steps)
    targets = csp_targets(test_ds)
    csp["k1_guided"] = {**csp_metrics(targets, recs, 1, args.workers), "sample_seconds": secs}
    test_k = prepare("test", args.n_test_k or args.n_test, args.workers)
    recs, secs = timed_sample(
        ckpt, task="csp", structures=test_k, steps=args.steps, k=args.k, guidance=1.0
    )
    csp[f"k{args.k}"] = {
        **csp_metrics(csp_targets(test_k), recs, args.k, args.workers),
        "sample_seconds": secs,
    }
    csp[f"k{args.k}"]["crystals_per_s"] = len(recs) / secs
    results["csp"] = csp
    log.info("CSP: %s", csp)
    save_partial(results)
    recs, secs = timed_sample(ckpt, n=args.n_dng, steps=args.steps)
    results["dng"] = {
        **dng_metrics(recs, args.workers),
        "steps": args.steps,
        "sample_seconds": secs,
        "samples": str(write_samples(run / "dng_samples", recs)["table"].relative_to(REPO_ROOT)),
    }
    results["dng"]["crystals_per_s"] = len(recs) / secs
    results["dng"]["evaluation"] = evaluate_records(
        recs, shared_data_dir() / "mp_20" / "train_partial.csv.gz", args.workers, 0, LABEL
    )
    log.info("DNG: %s", results["dng"])
    save_partial(results)
    sweep = []
    sub = prepare("test", args.sweep_n, args.workers)
    for steps in args.sweep:
        recs, secs = timed_sample(ckpt, task="csp", structures=sub, steps=steps)
        row = {"steps": steps, **csp_metrics(csp_targets(sub), recs, 1, args.workers)}
        row["csp_seconds"] = secs
        recs, secs = timed_sample(ckpt, n=args.sweep_n * 2, steps=steps)
        row["dng"] = dng_metrics(recs, args.workers)
        row["dng_crystals_per_s"] = len(recs) / secs
        sweep.append(row)
        log.info("sweep %s", row)
        save_partial({**results, "step_sweep": sweep})
    results["step_sweep"] = sweep
    results["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "mcflow_benchmark.json", results)
    write_text_atomic(RESULTS / "mcflow_benchmark.md", render_markdown(results, args))
    PARTIAL.unlink(missing_ok=True)


def save_partial(results: dict[str, Any]) -> None:
    """Keep what is measured so far (the full evaluation takes an hour on 2 cores)."""
    write_json_atomic(PARTIAL, results)


def render_markdown(r: dict[str, Any], args: argparse.Namespace) -> str:
    """Human-readable summary next to the JSON."""
    tr, csp, dng = r["train"], r["csp"], r["dng"]
    k1, kk = csp["k1_guided"], csp[f"k{args.k}"]
    lines = [
        "# MCFlow benchmark (cpu-small)",
        "",
        f"- date: {r['date']}",
        f"- command: `{r['command']}`",
        f"- machine: {r['machine'].get('cpu', r['machine']['platform'])}, "
        f"{r['machine']['cpu_count']} cores, "
        f"torch {r['machine']['torch']} ({r['machine']['device']}), {args.threads} threads",
        f"- load average (1, 5, 15 min) at start {r['machine']['load_average_start']}, "
        f"at end {r['machine']['load_average_end']} ({r['machine']['cpu_count']} cores; other "
        "work on the machine slows training and sampling)",
        f"- training: `configs/mcflow/cpu-small.yaml` on MP-20 `train_partial` "
        f"({'first ' + str(args.train_limit) if args.train_limit else 'all'} rows), "
        f"{args.train_minutes:g} min wall budget → {tr['steps']} steps "
        f"(≈{tr['epochs']:.1f} epochs), final train loss {tr['final_train_loss']:.3f}, "
        f"{tr['train_crystals_per_s']:.0f} crystals/s; evaluated checkpoint: "
        f"`{Path(tr['checkpoint']).name}` ({tr['evaluated']}, EMA weights); training finished "
        f"{tr['finished']} (a rerun evaluates the cached run)",
        "- network: hidden {hidden}, depth {depth}, heads {heads}, coordinate frequencies "
        "{coord_frequencies}, geometry {geometry} ({pair_frequencies} pair frequencies), "
        "edge MLP width {edge_hidden}; translation-free "
        "coordinate loss {translation_free}".format(
            **tr["config"]["network"], translation_free=tr["config"]["flow"]["translation_free"]
        ),
        "- loss weights types / coords / lengths / angles: "
        "{w_types:g} / {w_coords:g} / {w_lengths:g} / {w_angles:g} "
        "(paper: 0.5 / 2 / 1 / 1)".format(**tr["config"]["flow"]),
        f"- test set: first {args.n_test} rows of MP-20 `test`; integration steps {args.steps}",
        f"- DNG samples (table, extxyz, CIFs): `{Path(r['dng']['samples']).parent}/`",
        "",
        "| metric | this run (cpu-small) | paper (MCFlow-B, 500 steps) |",
        "| --- | --- | --- |",
        f"| CSP match rate, 1 sample (guided ω=2, σ=0.1) | {k1['match_rate']:.2f}% | 63.14% |",
        f"| CSP RMSE, 1 sample | {k1['rmse']:.4f} | 0.0611 |",
        f"| CSP match rate, {args.k} samples (first {kk['n_compositions']} compositions) "
        f"| {kk['match_rate']:.2f}% | 77.12% |",
        f"| CSP RMSE, {args.k} samples | {kk['rmse']:.4f} | 0.0439 |",
        f"| DNG structural validity ({dng['n']} samples) "
        f"| {dng['struct_validity']:.2f}% | 99.44% |",
        f"| DNG compositional validity | {dng['comp_validity']:.2f}% | 89.85% |",
        f"| DNG P1 rate | {dng['p1_rate']:.2f}% | (MP-20: ≈1.6%) |",
        f"| sampling throughput, CSP k={args.k} | {kk['crystals_per_s']:.1f} crystals/s | |",
        f"| sampling throughput, DNG | {dng['crystals_per_s']:.1f} crystals/s | |",
        "",
        f"## De novo samples: the papers' full evaluation ({dng['n']} samples, 1 seed)",
        "",
        dng["evaluation"]["paper_row_markdown"],
        "",
        "Sample sanity against the training set (`train_partial`; goal: mean distinct elements "
        "within 0.3 of it):",
        "",
        *sanity_lines(dng["evaluation"]),
        "",
        f"## Step sweep (CSP: first {args.sweep_n} compositions, 1 guided sample; "
        f"DNG: {2 * args.sweep_n} samples)",
        "",
        "| steps | CSP match % | CSP RMSE | DNG struct. valid % | DNG comp. valid % | DNG P1 % "
        "| DNG crystals/s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in r["step_sweep"]:
        d = row["dng"]
        lines.append(
            f"| {row['steps']} | {row['match_rate']:.1f} | {row['rmse']:.4f} | "
            f"{d['struct_validity']:.1f} | {d['comp_validity']:.1f} | {d['p1_rate']:.1f} | "
            f"{row['dng_crystals_per_s']:.1f} |"
        )
    lines += [
        "",
        "## Coordinate velocity loss on held-out crystals (types known, translation removed)",
        "",
        "| s | model | predicting zero |",
        "| --- | --- | --- |",
    ]
    for s, row in r["coord_loss_by_s"].items():
        lines.append(f"| {s} | {row['free']:.4f} | {row['zero_free']:.4f} |")
    lines += [
        "",
        "Metrics from the project's evaluation suite: `tasks.evaluate.csp_metrics.evaluate_csp` "
        "(StructureMatcher stol=0.5, ltol=0.3, angle_tol=10; only structurally valid "
        "predictions can match; RMSE normalized by (V/N)^(1/3), best of k, mean over matched) "
        "and `tasks.evaluate.funnel` (structural: distances ≥ 0.5 Å, volume ≥ 0.1 Å³; "
        "compositional: CDVAE-style SMACT; both over all requested samples; "
        f"P1 = SpacegroupAnalyzer at {EvaluateConfig().tolerance} over the structurally valid "
        "samples, as in the full evaluation).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
