"""GPU readiness: train each model's paper-size profile for a fixed number of steps, sample, time.

Run on a CUDA machine from the repository root (``benchmarks/gpu_smoke.sh`` does this)::

    .venv/bin/python -m benchmarks.gpu_smoke --steps 300 --n-samples 1000

For MCFlow-S (``configs/mcflow/S.yaml``) and SymADiT at the paper's size
(``configs/symadit/paper.yaml``), on the bundled 1,000 MP-20 training crystals (ingested
here, so the machine needs nothing but the repository): train ``--steps`` steps with the
profile's precision (bf16 autocast on CUDA), then sample ``--n-samples`` DNG crystals and
check their structural validity. Records ms/step, s/epoch (steps per epoch of MP-20's 27,136
training crystals at the profile's batch size, times ms/step: the paper's MCFlow-S figures
are 8.54 s/epoch and 23.9 ms/step on an A100), training and sampling throughput, and peak
GPU memory. Writes ``benchmarks/results/gpu_smoke.{json,md}`` (``--out`` for elsewhere).

On a CPU (``--device cpu``) the same code runs with a tiny step count and batch: the test
suite does this, so the script is known to work before a GPU is lent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch
import yaml

from benchmarks.machine import RESULTS_DIR, machine_info
from tasks.core.atomic import write_json_atomic, write_text_atomic
from tasks.core.paths import CONFIGS_DIR, SAMPLES_DIR

#: Training crystals of MP-20's train split (for s/epoch; the papers train on all of it).
MP20_TRAIN = 27_136
PAPER = {"mcflow": {"s_per_epoch": 8.54, "ms_per_step": 23.9, "gpu": "A100"}}
PROFILES = {
    "mcflow": CONFIGS_DIR / "mcflow" / "S.yaml",
    "symadit": CONFIGS_DIR / "symadit" / "paper.yaml",
}


def ingest_sample(out: Path, workers: int, limit: int | None = None) -> Path:
    """The bundled MP-20 training crystals (1,000, or the first ``limit``) as a records
    parquet, through the pipeline's ingest."""
    from tasks.ingest.config import IngestConfig
    from tasks.ingest.run import ingest_path

    config = IngestConfig(n_workers=workers, cache_dir=out / "cache", plots=False)
    sample = SAMPLES_DIR / "mp20_train_sample1000.csv.gz"
    [result] = ingest_path(sample, out / "dataset", config, limit=limit)
    return result.dataset


def smoke_profile(model: str, steps: int, device: str, batch: int | None, out: Path) -> Path:
    """The paper-size profile with a fixed step budget (and the batch, when given)."""
    profile = yaml.safe_load(PROFILES[model].read_text())
    stages = ["train"] if model == "mcflow" else ["ae_trainer", "flow_trainer"]
    for stage in stages:
        trainer = profile.setdefault(stage, {})
        trainer.update(
            max_steps=steps,
            max_epochs=None,
            max_time_s=None,
            val_every=0,
            ckpt_every=steps,
            log_every=max(1, steps // 10),
            progress=False,
            device=device,
        )
        if batch:
            trainer["batch_size"] = batch
    if model == "mcflow":
        profile.setdefault("validation", {})["n_samples"] = 0
    else:
        profile.setdefault("validation", {})["n_expand"] = 0
    path = out / f"{model}-smoke.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def training_speed(metrics_file: Path, batch: int) -> dict[str, float]:
    """ms/step from the trainer's log (the first logged interval, with compilation and
    warm-up, is left out) and s/epoch of MP-20's training split at this batch size."""
    lines = [json.loads(x) for x in metrics_file.open()]
    train = [x for x in lines if x.get("split") == "train"]
    first, last = train[0], train[-1]
    span_steps = max(last["step"] - first["step"], 1)
    ms_per_step = 1000 * (last["elapsed_s"] - first["elapsed_s"]) / span_steps
    return {
        "steps": last["step"],
        "ms_per_step": ms_per_step,
        "s_per_epoch_mp20": ms_per_step / 1000 * MP20_TRAIN / batch,
        "train_crystals_per_s": 1000 * batch / ms_per_step,
    }


def run_model(model: str, dataset: Path, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train, sample and check one model; return its timings."""
    from models.contract import SampleRequest, TrainRequest
    from models.registry import get_model
    from tasks.evaluate.validity import structural_validity

    profile = smoke_profile(model, args.steps, args.device, args.batch_size, out)
    implementation = get_model(model)
    run_dir = out / model
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    checkpoint = implementation.train(
        TrainRequest(profile=str(profile), dataset=dataset, out_dir=run_dir)
    )
    train_s = time.perf_counter() - start
    config = yaml.safe_load(profile.read_text())
    logs = {
        "train": run_dir,
        "ae_trainer": run_dir / "autoencoder",
        "flow_trainer": run_dir / "flow",
    }
    speeds = {
        stage: training_speed(
            logs[stage] / "metrics.jsonl", int(config[stage].get("batch_size", 256))
        )
        for stage in (["train"] if model == "mcflow" else ["ae_trainer", "flow_trainer"])
    }
    start = time.perf_counter()
    request = SampleRequest(
        checkpoint=checkpoint, n=args.n_samples, seed=0, steps=args.sample_steps
    )
    records = implementation.sample(request)
    sample_s = time.perf_counter() - start
    ok = [r.to_structure() for r in records if r.status == "ok"]
    valid = sum(structural_validity(s)[0] for s in ok)
    return {
        "profile": str(PROFILES[model].relative_to(PROFILES[model].parents[2])),
        "train_wall_s": train_s,
        "speed": speeds,
        "sample_wall_s": sample_s,
        "sample_crystals_per_s": len(records) / sample_s,
        "n_samples": len(records),
        "structurally_valid": valid,
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30
        if torch.cuda.is_available()
        else None,
    }


def render(result: dict[str, Any]) -> str:
    """The markdown record."""
    m = result["machine"]
    lines = [
        "# GPU smoke: paper-size profiles, fixed steps, bf16 where CUDA",
        "",
        f"- command: `{result['command']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores; GPU: {result['gpu'] or 'none'}; "
        f"{m['date_utc']} UTC; load {m['load_average']}",
        f"- data: {result['crystals']} bundled MP-20 training crystals; "
        f"{result['steps']} steps per stage",
        "",
        "| model | stage | ms/step | s/epoch (MP-20, 27,136) | train crystals/s | sampling crystals/s | valid | paper |",  # noqa: E501
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, row in result["models"].items():
        paper = PAPER.get(model)
        note = (
            f"{paper['ms_per_step']} ms/step, {paper['s_per_epoch']} s/epoch ({paper['gpu']})"
            if paper
            else ""
        )
        for stage, speed in row["speed"].items():
            lines.append(
                f"| {model} | {stage} | {speed['ms_per_step']:.1f} | "
                f"{speed['s_per_epoch_mp20']:.1f} | "
                f"{speed['train_crystals_per_s']:.0f} | {row['sample_crystals_per_s']:.1f} | "
                f"{row['structurally_valid']}/{row['n_samples']} | {note} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--batch-size", type=int, default=None, help="override the profiles'")
    parser.add_argument("--sample-steps", type=int, default=None, help="default: the profiles'")
    parser.add_argument("--crystals", type=int, default=None, help="first N bundled crystals")
    parser.add_argument("--models", nargs="+", default=["mcflow", "symadit"])
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--work", type=Path, default=Path("data/cache/gpu_smoke"))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    dataset = ingest_sample(args.work, args.workers, args.crystals)
    result: dict[str, Any] = {
        "command": "python -m benchmarks.gpu_smoke "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "steps": args.steps,
        "crystals": args.crystals or 1000,
        "models": {m: run_model(m, dataset, args, args.work) for m in args.models},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "gpu_smoke.json", result)
    write_text_atomic(args.out / "gpu_smoke.md", render(result))
    print(render(result))
    return result


if __name__ == "__main__":
    main()
