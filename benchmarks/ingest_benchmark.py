"""Ingestion throughput (cold and cached) and MP-20 statistics against the shared table.

1. Throughput: the first ``--n`` rows of MP-20 val ingested with an empty cache using one
   worker process and all cores, then again with the warm cache.
2. Statistics: ingest ``../shared/data/mp_20`` (all three splits; cached analyses are
   reused) and compare with the table in ``../shared/data/README.md``.

Usage::

    python -m benchmarks.ingest_benchmark [--n 400] [--skip-stats]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from benchmarks.machine import machine_info, save_results
from tasks.core.paths import resolve_data_path
from tasks.ingest.config import DatasetSource, IngestConfig
from tasks.ingest.run import ingest_path, ingest_source, summary_table

#: The table of ../shared/data/README.md (pymatgen SpacegroupAnalyzer, symprec 0.1).
SHARED_TABLE = {
    "mp_20/train_partial": {"p1": 1.858, "n_sg": 158, "atoms": (10.04, 5.37, 20),
                            "elements": (2.973, 0.724), "orbits": (4.685, 3.030, 20), "pairs": 825},
    "mp_20/val": {"p1": 1.625, "n_sg": 157, "atoms": (10.26, 5.32, 20),
                  "elements": (3.006, 0.722), "orbits": (4.651, 2.851, 20), "pairs": 814},
    "mp_20/test": {"p1": 1.813, "n_sg": 157, "atoms": (10.23, 5.34, 20),
                   "elements": (3.015, 0.713), "orbits": (4.626, 2.839, 20), "pairs": 816},
}  # fmt: skip


def measured_row(stats: dict) -> dict:
    """The shared table's statistics, computed from our ``stats.json``."""
    atoms, elements, orbits = (
        stats["atoms_per_cell"],
        stats["unique_elements"],
        stats["orbits_per_crystal"],
    )
    return {
        "p1": round(100 * stats["p1_fraction"], 3),
        "n_sg": stats["n_spacegroups"],
        "atoms": (round(atoms["mean"], 2), round(atoms["std"], 2), int(atoms["max"])),
        "elements": (round(elements["mean"], 3), round(elements["std"], 3)),
        "orbits": (round(orbits["mean"], 3), round(orbits["std"], 3), int(orbits["max"])),
        "pairs": stats["n_wyckoff_pairs"],
    }


def throughput(n: int, workers: int, cache_dir: Path, out: Path) -> dict:
    """Structures/s of one ingestion of ``n`` val rows."""
    source = DatasetSource(kind="csv", path=resolve_data_path("shared:mp_20/val.csv.gz"), limit=n)
    config = IngestConfig(n_workers=workers, cache_dir=cache_dir, plots=False)
    result = ingest_source(source, out, config)
    return {
        "workers": workers,
        "structures": n,
        "cached": result.n_cached,
        "seconds": round(result.seconds, 2),
        "structures_per_second": round(n / result.seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--skip-stats", action="store_true")
    parser.add_argument("--out", default="runs/benchmarks/ingest")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    out = Path(args.out)
    runs = []
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as many:
        runs.append(throughput(args.n, 1, Path(one), out / "one"))
        runs.append(throughput(args.n, cores, Path(many), out / "all"))
        runs.append(throughput(args.n, cores, Path(many), out / "cached"))
    rows = "\n".join(
        f"| {r['workers']} | {r['structures']} | {'warm' if r['cached'] else 'cold'} | "
        f"{r['seconds']} | {r['structures_per_second']} |"
        for r in runs
    )
    result: dict = {"throughput": runs, "machine": machine_info()}
    stats_md = ""
    if not args.skip_stats:
        results = ingest_path(resolve_data_path("shared:mp_20"), out / "mp_20", IngestConfig())
        comparison = {
            r.name: {"measured": measured_row(r.stats), "shared_table": SHARED_TABLE.get(r.name)}
            for r in results
        }
        result["mp20_stats"] = comparison
        stats_md = "## MP-20 statistics (ours, symprec 0.1)\n\n" + summary_table(results)
        stats_md += "\n### Against ../shared/data/README.md\n\n"
        stats_md += "| split | statistic | ours | shared |\n| --- | --- | --- | --- |\n"
        for name, pair in comparison.items():
            for key, value in pair["measured"].items():
                stats_md += (
                    f"| {name} | {key} | {value} | {(pair['shared_table'] or {}).get(key)} |\n"
                )
    machine = result["machine"]
    markdown = f"""# Ingestion benchmark

Parse → checks → primitive Niggli cell → spglib (symprec 0.1) + MCFlow order → pyxtal tokens.
{machine["cpu"]}, {machine["cores"]} cores, load average {machine["load_average"]},
{machine["date_utc"]} UTC. Command: `python -m benchmarks.ingest_benchmark --n {args.n}`.

| workers | structures | cache | seconds | structures/s |
| --- | --- | --- | --- | --- |
{rows}

{stats_md}"""
    save_results("ingest_benchmark", result, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
