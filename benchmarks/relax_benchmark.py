"""Benchmark: CHGNet relaxations per minute, one-process ASE loop vs the parallel CPU path.

Run from the repository root::

    .venv/bin/python benchmarks/relax_benchmark.py --n 48

The same N MP-20 test structures (bundled sample, positions rattled by 0.05 Å with a fixed
seed so every relaxation has work to do) are relaxed (FIRE + Fréchet cell filter, fmax
0.05, 300 steps) in one run by: the ASE loop in this process (1 torch thread, model already
loaded), the spawn process pool (one process per core, 1 thread each, end to end including
worker start-up and model loading) and optionally a Dask LocalCluster. Single-point
throughput (atoms/s) is measured on the same structures. Writes
``benchmarks/results/relax_benchmark.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from importlib.metadata import version

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from tasks.atomic import write_json_atomic, write_text_atomic
from tasks.paths import REPO_ROOT
from tasks.records import structure_to_json
from tasks.relax import RelaxConfig, load_candidates, relax_items

try:
    from benchmarks.machine import machine_info
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from machine import machine_info

RESULTS = REPO_ROOT / "benchmarks" / "results"


def machine() -> dict:
    """The machine description plus the torch and CHGNet versions."""
    return {**machine_info(), "torch": torch.__version__, "chgnet": version("chgnet")}


def rattled_items(n: int, seed: int) -> list[tuple[str, str]]:
    """The first ``n`` bundled MP-20 test structures, positions rattled by 0.05 Å."""
    from tasks.records import structure_from_json

    items, _ = load_candidates(REPO_ROOT / "data" / "samples" / "mp20_test_sample200.csv.gz")
    rng = np.random.default_rng(seed)
    out = []
    for candidate_id, text in items[:n]:
        structure = structure_from_json(text)
        noise = rng.normal(0.0, 0.05, size=(len(structure), 3))
        moved = structure.copy()
        for k, shift in enumerate(noise):
            moved.translate_sites([k], shift, frac_coords=False)
        out.append((candidate_id, structure_to_json(moved)))
    return out


def timed(label: str, items, config: RelaxConfig) -> dict:
    start = time.perf_counter()
    frame = relax_items(items, config=config)
    elapsed = time.perf_counter() - start
    print(f"{label}: {len(items)} in {elapsed:.1f} s", file=sys.stderr)
    return {
        "wall_s": elapsed,
        "per_minute": 60 * len(items) / elapsed,
        "status": frame["status"].value_counts().to_dict(),
        "converged": int(frame["converged"].sum()),
        "mean_steps": float(frame["steps"].mean()),
        "sum_of_per_structure_wall_s": float(frame["wall_s"].sum()),
        "energies": frame["energy"].tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="number of structures")
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--dask", action="store_true", help="also time a Dask LocalCluster")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = rattled_items(args.n, args.seed)
    n_atoms = [len(json.loads(t)["sites"]) for _, t in items]
    before = machine()
    base = RelaxConfig(scheduler="serial", chunk_size=args.chunk_size, n_workers=args.workers)
    relax_items(items[:1], config=base.model_copy(update={"steps": 0}))  # load the model once

    start = time.perf_counter()
    relax_items(items, config=base.model_copy(update={"steps": 0}))
    sp_s = time.perf_counter() - start
    results = {"single_point": {"wall_s": sp_s, "atoms_per_s": sum(n_atoms) / sp_s,
                                "structures_per_s": len(items) / sp_s}}  # fmt: skip
    results["serial_ase_loop"] = timed("serial", items, base)
    results["process_pool"] = timed(
        "process", items, base.model_copy(update={"scheduler": "process"})
    )
    if args.dask:
        results["dask_local"] = timed("dask", items, base.model_copy(update={"scheduler": "dask"}))
    serial_e = np.array(results["serial_ase_loop"]["energies"])
    for key in ("process_pool", "dask_local"):
        if key in results:
            other = np.array(results[key].pop("energies"))
            results[key]["speedup_vs_serial"] = (
                results["serial_ase_loop"]["wall_s"] / results[key]["wall_s"]
            )
            results[key]["max_abs_energy_diff_vs_serial_eV"] = float(
                np.nanmax(np.abs(other - serial_e))
            )
    results["serial_ase_loop"].pop("energies")
    report = {
        "benchmark": "relax_benchmark",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/relax_benchmark.py", *sys.argv[1:]]),
        "machine_before": before,
        "load_average_after": os.getloadavg(),
        "note": "machine shared with other engineers' jobs while measuring (see load averages)",
        "structures": {
            "source": "data/samples/mp20_test_sample200.csv.gz (first N rows)",
            "n": len(items),
            "atoms_total": sum(n_atoms),
            "atoms_min_max": [min(n_atoms), max(n_atoms)],
            "rattle_sigma_A": 0.05,
            "seed": args.seed,
        },
        "settings": base.model_dump(mode="json"),
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "relax_benchmark.json", report)
    write_text_atomic(RESULTS / "relax_benchmark.md", markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    """A short human summary of the report."""
    r = report["results"]
    lines = [
        "# CHGNet relaxation throughput",
        "",
        f"{report['date_utc']}, `{report['command']}`",
        f"{report['machine_before']['cpu']}, {report['machine_before']['cores']} cores; "
        f"load average before {report['machine_before']['load_average']}, after "
        f"{report['load_average_after']} ({report['note']}).",
        f"{report['structures']['n']} MP-20 test structures "
        f"({report['structures']['atoms_total']} atoms), rattled 0.05 Å; FIRE + Fréchet cell "
        "filter, fmax 0.05 eV/Å, ≤300 steps, 1 torch thread per process.",
        "",
        "| path | wall s | relaxations/min | speed-up |",
        "| --- | --- | --- | --- |",
    ]
    for key in ("serial_ase_loop", "process_pool", "dask_local"):
        if key in r:
            speed = r[key].get("speedup_vs_serial", 1.0)
            lines.append(
                f"| {key} | {r[key]['wall_s']:.1f} | {r[key]['per_minute']:.1f} | {speed:.2f}x |"
            )
    serial = r["serial_ase_loop"]["sum_of_per_structure_wall_s"]
    lines.append("")
    for key in ("process_pool", "dask_local"):
        if key in r:
            busy = r[key]["sum_of_per_structure_wall_s"]
            workers = report["machine_before"]["cores"]
            lines.append(
                f"- {key}: one relaxation took {busy / serial:.2f}x as long as in the serial "
                f"loop; about {r[key]['wall_s'] - busy / workers:.0f} s of its wall time was "
                "worker start-up and model loading. A per-structure slowdown near the worker "
                "count means the cores were already saturated by other jobs, so extra "
                "processes got no extra CPU."
            )
    sp = r["single_point"]
    lines += [
        "",
        f"Single points (one process, 1 thread): {sp['atoms_per_s']:.0f} atoms/s, "
        f"{sp['structures_per_s']:.2f} structures/s.",
        "The process pool and Dask times include starting the workers and loading CHGNet in "
        "each; the serial loop reuses the already-loaded model.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
