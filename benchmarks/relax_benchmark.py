"""Benchmark: CHGNet relaxations per minute, one-process ASE loop vs the parallel CPU path.

Run from the repository root::

    .venv/bin/python benchmarks/relax_benchmark.py --n 48

The same N MP-20 test structures (bundled sample, positions rattled by 0.05 Å with a fixed
seed so every relaxation has work to do) are relaxed (FIRE + Fréchet cell filter, fmax
0.05, 300 steps) in one run by: the ASE loop in this process (1 torch thread, model already
loaded), the spawn process pool (one process per core, 1 thread each, end to end including
worker start-up and model loading) and optionally a Dask LocalCluster. Single-point
throughput (atoms/s) is measured on the same structures.

With ``--batched --mace-model PATH`` the same structures are also relaxed with that MACE
model twice in the same run, on ``cuda`` when available (else the CPU): by the ASE loop (one
structure at a time, ``scheduler: serial``) and by the batched torch-sim path
(``engine: batched``, ``--batch-size`` structures per batch), both with the model loaded
beforehand, and the ratio of their wall times is reported. Writes ``relax_benchmark.json``
and ``.md`` to ``--out-dir`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from tasks.core.atomic import write_json_atomic, write_text_atomic
from tasks.core.paths import REPO_ROOT
from tasks.core.records import structure_to_json
from tasks.mlip.runner import load_candidates, relax_items
from tasks.mlip.settings import MLIPConfig, RelaxConfig

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
    from tasks.core.records import structure_from_json

    items = load_candidates(REPO_ROOT / "data" / "samples" / "mp20_test_sample200.csv.gz").items
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


def timed(label: str, items, config: RelaxConfig, mlip: MLIPConfig | None = None) -> dict:
    start = time.perf_counter()
    frame = relax_items(items, mlip, config)
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
        "energies_per_atom": frame["energy_per_atom"].tolist(),
    }


def mace_batched(items, base: RelaxConfig, model: str, batch_size: int) -> dict:
    """The ASE loop and the batched torch-sim path with the same MACE model and device."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mlip = MLIPConfig(name="mace", model=model, device=device)
    loop = base.model_copy(update={"scheduler": "serial"})
    batched = base.model_copy(update={"engine": "batched", "chunk_size": batch_size})
    for config in (loop, batched):  # load the model (and warm up the device) untimed
        relax_items(items[:1], mlip, config.model_copy(update={"steps": 0}))
    out = {"device": device, "model": model, "batch_size": batch_size}
    out["ase_loop"] = timed("mace ase loop", items, loop, mlip)
    out["batched"] = timed("mace batched", items, batched, mlip)
    out["speedup_vs_ase_loop"] = out["ase_loop"]["wall_s"] / out["batched"]["wall_s"]
    for key in ("ase_loop", "batched"):
        out[key]["structures_per_s"] = len(items) / out[key]["wall_s"]
    per_atom = [np.array(out[key].pop("energies_per_atom")) for key in ("ase_loop", "batched")]
    out["max_abs_energy_per_atom_diff_eV"] = float(np.nanmax(np.abs(per_atom[1] - per_atom[0])))
    for key in ("ase_loop", "batched"):
        out[key].pop("energies")
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="number of structures")
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument("--dask", action="store_true", help="also time a Dask LocalCluster")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batched", action="store_true", help="also time MACE: batched torch-sim vs ASE loop"
    )
    parser.add_argument("--mace-model", help="local MACE .model file (needed with --batched)")
    parser.add_argument(
        "--batch-size", type=int, default=0, help="structures per batch; 0 = all N in one"
    )
    parser.add_argument("--out-dir", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args()
    if args.batched and not args.mace_model:
        parser.error("--batched needs --mace-model PATH")
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
    for key in ("serial_ase_loop", "process_pool", "dask_local"):
        if key in results:
            results[key].pop("energies_per_atom")
    if args.batched:
        results["mace_batched"] = mace_batched(
            items, base, args.mace_model, args.batch_size or len(items)
        )
    report = {
        "benchmark": "relax_benchmark",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/relax_benchmark.py", *sys.argv[1:]]),
        "machine_before": before,
        "load_average_after": os.getloadavg(),
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
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out_dir / "relax_benchmark.json", report)
    write_text_atomic(args.out_dir / "relax_benchmark.md", markdown(report))
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
        f"{[round(v, 2) for v in report['load_average_after']]}.",
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
                f"loop, so {workers} workers can give at most {workers * serial / busy:.2f}x; "
                f"about {r[key]['wall_s'] - busy / workers:.0f} s of its wall time was worker "
                "start-up, model loading and idle tail. A per-structure slowdown means each "
                "core ran slower with all of them busy (shared caches and memory bandwidth, "
                "other jobs, or worker overhead)."
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
    if "mace_batched" in r:
        lines += mace_markdown(r["mace_batched"])
    return "\n".join(lines)


def mace_markdown(m: dict) -> list[str]:
    """The MACE section: batched torch-sim path vs the ASE loop, same model and device."""
    where = m.get("gpu", m["device"])
    lines = [
        "## MACE: batched (torch-sim) vs ASE loop",
        "",
        f"Model `{m['model']}` on {where}, float64; batches of {m['batch_size']}; both with "
        "the model loaded beforehand, one process.",
        "",
        "| path | wall s | structures/s | converged | mean steps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key in ("ase_loop", "batched"):
        p = m[key]
        lines.append(
            f"| {key} | {p['wall_s']:.1f} | {p['structures_per_s']:.2f} | {p['converged']} | "
            f"{p['mean_steps']:.1f} |"
        )
    lines += [
        "",
        f"Batched / ASE loop throughput: **{m['speedup_vs_ase_loop']:.2f}x**; largest "
        f"energy difference {m['max_abs_energy_per_atom_diff_eV']:.2g} eV/atom.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
