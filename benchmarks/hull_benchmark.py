"""Benchmark: MLIP hull for 100 candidates, cold (empty reference cache) vs warm.

Run from the repository root::

    .venv/bin/python -m benchmarks.hull_benchmark --n 100 --energies single_point

Candidates: the first N bundled MP-20 test structures with CHGNet single-point energies
(the hull stage is what is timed, not the candidates' relaxation). References: the bundled
1,000-row MP-20 train sample plus ASE elemental prototypes, built by the product's
:func:`tasks.mlip.hull.hull_references` from an :class:`MLIPHullConfig` with those
``energies`` (CHGNet single points, or relaxations with fmax 0.05 and 300 steps) in a process
pool over all cores. Cold = empty cache directory; warm = a new
:class:`tasks.mlip.hull.MLIPHull` reading the cache the cold run wrote. Writes
``benchmarks/results/hull_benchmark.json`` and ``.md`` through :mod:`benchmarks.machine`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch

from benchmarks.machine import machine_info, save_results
from tasks.core.columns import Col
from tasks.core.records import STATUS_OK
from tasks.mlip.backends import load_mlip
from tasks.mlip.hull import MLIPHull, hull_references
from tasks.mlip.runner import load_candidates, relax_items
from tasks.mlip.settings import MLIPConfig, MLIPHullConfig, RelaxConfig, ScreenSettings

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
REFERENCES = "data/samples/mp20_train_sample1000.csv.gz"


def run(candidates, config: MLIPHullConfig, relax: RelaxConfig) -> dict:
    """Time one hull evaluation with a fresh :class:`MLIPHull` of ``config``."""
    start = time.perf_counter()
    references = hull_references(config, load_mlip(MLIPConfig()).version)
    hull = MLIPHull(references, ScreenSettings(relax=relax, hull=config))
    frame = hull.evaluate(candidates)
    elapsed = time.perf_counter() - start
    print(f"hull: {elapsed:.1f} s {hull.stats}", file=sys.stderr)
    return {
        "wall_s": elapsed,
        "reference_method": references.method,
        "reference_description": references.description,
        "references": dict(hull.stats),
        "placed": int((frame[Col.HULL_STATUS] == STATUS_OK).sum()),
        "stable": int(frame[Col.STABLE].sum()),
        "metastable": int(frame[Col.METASTABLE].sum()),
        "e_hull": frame[Col.E_HULL].round(6).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of candidates")
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument(
        "--energies", choices=["single_point", "relaxed"], default="single_point",
        help="how the reference energies are computed (MLIPHullConfig.energies)",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(1)
    items = load_candidates(SAMPLES / "mp20_test_sample200.csv.gz").items[: args.n]
    candidates = relax_items(items, config=RelaxConfig(scheduler="serial", steps=0))
    relax = RelaxConfig(n_workers=args.workers, chunk_size=8)
    before = {**machine_info(), "torch": torch.__version__, "chgnet": version("chgnet")}
    with tempfile.TemporaryDirectory(prefix="hull-bench-") as tmp:
        config = MLIPHullConfig(reference=[REFERENCES], energies=args.energies, cache_dir=tmp)
        cold = run(candidates, config, relax)
        warm = run(candidates, config, relax)
    same = cold.pop("e_hull") == warm.pop("e_hull")
    report = {
        "benchmark": "hull_benchmark",
        "machine": before,
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "candidates": f"first {len(items)} rows of data/samples/mp20_test_sample200.csv.gz, "
        "CHGNet single points",
        "reference_set": f"{REFERENCES} + ASE elemental prototypes",
        "n_candidates": len(items),
        "energies": args.energies,
        "relax": relax.model_dump(mode="json"),
        "cold": cold,
        "warm": warm,
        "warm_speedup": cold["wall_s"] / warm["wall_s"],
        "identical_e_hull_cold_vs_warm": same,
    }
    print(save_results("hull_benchmark", report, markdown(report)))


def markdown(report: dict) -> str:
    """A short human summary of the report."""
    cold, warm = report["cold"], report["warm"]
    return "\n".join(
        [
            "# MLIP hull: cold vs warm reference cache",
            "",
            f"{report['machine']['date_utc']} UTC, "
            f"`python -m benchmarks.hull_benchmark {' '.join(sys.argv[1:])}`",
            f"{report['machine']['cpu']}, {report['machine']['cores']} cores; "
            f"load average before {report['machine']['load_average']}, after "
            f"{report['load_average_after']}.",
            f"Candidates: {report['candidates']}. References: {report['reference_set']}; "
            f"{cold['reference_description']} (method: {cold['reference_method']}).",
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
