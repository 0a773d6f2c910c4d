"""Benchmark: MLIP hull for 100 candidates, cold (empty reference cache) vs warm.

Run from the repository root::

    .venv/bin/python benchmarks/hull_benchmark.py --n 100

Candidates: the first N bundled MP-20 test structures with CHGNet single-point energies
(the hull stage is what is timed, not the candidates' relaxation). References: the bundled
1,000-row MP-20 train sample plus ASE elemental prototypes, relaxed with CHGNet (fmax 0.05,
300 steps) in a process pool over all cores. Cold = empty cache directory; warm = a new
:class:`tasks.mlip.hull.MLIPHull` reading the cache the cold run wrote. Writes
``benchmarks/results/hull_benchmark.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from tasks.core.atomic import write_json_atomic, write_text_atomic
from tasks.core.paths import REPO_ROOT
from tasks.mlip.hull import MLIPHull, read_references
from tasks.mlip.runner import load_candidates, relax_items
from tasks.mlip.settings import MLIPHullConfig, RelaxConfig

try:
    from benchmarks.relax_benchmark import machine
except ModuleNotFoundError:  # run as a script: benchmarks/ itself is on sys.path
    from relax_benchmark import machine

RESULTS = REPO_ROOT / "benchmarks" / "results"
SAMPLES = REPO_ROOT / "data" / "samples"


def run(candidates, cache: Path, relax: RelaxConfig, single_point: bool) -> dict:
    """Time one hull evaluation with a fresh :class:`MLIPHull` on ``cache``."""
    start = time.perf_counter()
    hull = MLIPHull(
        read_references(SAMPLES / "mp20_train_sample1000.csv.gz"),
        relax=relax,
        config=MLIPHullConfig(cache_dir=cache, single_point_references=single_point),
    )
    frame = hull.evaluate(candidates)
    elapsed = time.perf_counter() - start
    print(f"hull: {elapsed:.1f} s {hull.stats}", file=sys.stderr)
    return {
        "wall_s": elapsed,
        "references": dict(hull.stats),
        "placed": int((frame["hull_status"] == "ok").sum()),
        "stable": int(frame["stable"].sum()),
        "metastable": int(frame["metastable"].sum()),
        "e_hull": frame["e_hull"].round(6).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of candidates")
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--single-point-references", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = load_candidates(SAMPLES / "mp20_test_sample200.csv.gz").items
    items = items[: args.n]
    candidates = relax_items(items, config=RelaxConfig(scheduler="serial", steps=0))
    relax = RelaxConfig(n_workers=args.workers, chunk_size=8)
    before = machine()
    with tempfile.TemporaryDirectory(prefix="hull-bench-") as tmp:
        cold = run(candidates, Path(tmp), relax, args.single_point_references)
        warm = run(candidates, Path(tmp), relax, args.single_point_references)
    same = cold.pop("e_hull") == warm.pop("e_hull")
    report = {
        "benchmark": "hull_benchmark",
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "benchmarks/hull_benchmark.py", *sys.argv[1:]]),
        "machine_before": before,
        "load_average_after": os.getloadavg(),
        "candidates": f"first {len(items)} rows of data/samples/mp20_test_sample200.csv.gz, "
        "CHGNet single points",
        "reference_set": "data/samples/mp20_train_sample1000.csv.gz + ASE elemental prototypes",
        "n_candidates": len(items),
        "single_point_references": args.single_point_references,
        "relax": relax.model_dump(mode="json"),
        "cold": cold,
        "warm": warm,
        "warm_speedup": cold["wall_s"] / warm["wall_s"],
        "identical_e_hull_cold_vs_warm": same,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / "hull_benchmark.json", report)
    write_text_atomic(RESULTS / "hull_benchmark.md", markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    """A short human summary of the report."""
    cold, warm = report["cold"], report["warm"]
    return "\n".join(
        [
            "# MLIP hull: cold vs warm reference cache",
            "",
            f"{report['date_utc']}, `{report['command']}`",
            f"{report['machine_before']['cpu']}, {report['machine_before']['cores']} cores; "
            f"load average before {report['machine_before']['load_average']}, after "
            f"{[round(v, 2) for v in report['load_average_after']]}.",
            f"Candidates: {report['candidates']}. References: {report['reference_set']}, "
            f"{'single points' if report['single_point_references'] else 'relaxed'} with CHGNet.",
            "",
            "| run | wall s | references computed | references from cache |",
            "| --- | --- | --- | --- |",
            f"| cold | {cold['wall_s']:.1f} | {cold['references']['computed']} | "
            f"{cold['references']['cached']} |",
            f"| warm | {warm['wall_s']:.1f} | {warm['references']['computed']} | "
            f"{warm['references']['cached']} |",
            "",
            f"Warm is {report['warm_speedup']:.0f}x faster; identical E_hull cold vs warm: "
            f"{report['identical_e_hull_cold_vs_warm']}. Placed {cold['placed']} of "
            f"{report['n_candidates']} candidates ({cold['stable']} stable, {cold['metastable']} "
            "metastable against this small 1,000-structure reference sample: the sample lacks "
            "most competing phases, so these counts are not a stability estimate).",
            "",
        ]
    )


if __name__ == "__main__":
    main()
