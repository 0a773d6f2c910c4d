"""Benchmark: fast (bucketed, parallel) vs naive uniqueness + novelty on MP-20.

Inputs (seeded): ``n_samples`` structures = MP-20 test/val crystals, perturbed duplicates
of them (supercells, permuted sites, translated, slightly strained copies) and perturbed
copies of reference crystals (so that novelty has positives). Reference:
``mp_20/train_partial`` (11,249 crystals).

Measured in one run on the same inputs:
- fast path: reference index build (cold) and load (warm), uniqueness, novelty;
- naive uniqueness: one ``StructureMatcher.group_structures`` call over all samples;
- naive novelty: ``fit`` of each sample against every reference, on a random subset of
  ``naive_subset`` samples (the full naive run would take hours); its time is reported as
  measured and, clearly labelled, extrapolated linearly to all samples.
Verdicts of both paths are compared (all samples for uniqueness, the subset for novelty).

Run: ``.venv/bin/python benchmarks/matching_benchmark.py`` (options: ``--help``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from pymatgen.core import Structure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import machine_info
from tasks.core.atomic import write_json_atomic, write_text_atomic
from tasks.core.paths import REPO_ROOT, shared_data_dir
from tasks.core.structure_io import read_structures
from tasks.evaluate.matching import (
    ReferenceIndex,
    naive_novelty_matches,
    naive_unique_groups,
    novelty_matches,
    unique_groups,
)
from tasks.evaluate.settings import MatcherConfig

RESULTS = REPO_ROOT / "benchmarks" / "results"


def perturbed_copy(structure: Structure, rng: np.random.Generator) -> Structure:
    """A copy that the matcher must still match: one of four symmetry-preserving edits."""
    copy = structure.copy()
    kind = rng.integers(4)
    if kind == 0:
        copy.make_supercell([[1, 0, 0], [0, 1, 0], [0, 0, 2]])
    elif kind == 1:
        order = rng.permutation(len(copy))
        copy = Structure.from_sites([copy[int(i)] for i in order])
    elif kind == 2:
        copy.translate_sites(list(range(len(copy))), rng.random(3))
    else:
        copy.apply_strain(rng.uniform(-0.02, 0.02, 3))
        copy.perturb(0.02)
    return copy


def build_inputs(
    n_samples: int, seed: int, data: Path
) -> tuple[list[Structure], list[str], list[Structure]]:
    """Samples (shuffled) and the reference set."""
    rng = np.random.default_rng(seed)
    pool = [
        s
        for split in ("test", "val")
        for _, s, _ in read_structures(data / "mp_20" / f"{split}.csv.gz")
        if s is not None
    ]
    refs = [
        (i, s)
        for i, s, _ in read_structures(data / "mp_20" / "train_partial.csv.gz")
        if s is not None
    ]
    n_dup, n_train = n_samples // 5, n_samples // 20
    base = [pool[i] for i in rng.choice(len(pool), n_samples - n_dup - n_train, replace=False)]
    dups = [perturbed_copy(base[i], rng) for i in rng.choice(len(base), n_dup)]
    train_copies = [perturbed_copy(refs[i][1], rng) for i in rng.choice(len(refs), n_train)]
    samples = base + dups + train_copies
    samples = [samples[i] for i in rng.permutation(len(samples))]
    return samples, [i for i, _ in refs], [s for _, s in refs]


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=10_000)
    parser.add_argument("--naive-subset", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="matching_benchmark")
    args = parser.parse_args()

    data = shared_data_dir()
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    machine = machine_info()
    samples, ref_ids, refs = build_inputs(args.n_samples, args.seed, data)
    fast_cfg = MatcherConfig(workers=args.workers)

    index, t_build = timed(ReferenceIndex.build, ref_ids, refs, fast_cfg, "bench")
    with tempfile.TemporaryDirectory() as tmp:
        path = index.save(Path(tmp) / "index.json.gz")
        index, t_load = timed(ReferenceIndex.load, path)
    fast_groups, t_fast_u = timed(unique_groups, samples, fast_cfg)
    fast_novel, t_fast_n = timed(novelty_matches, samples, index, fast_cfg)

    naive_cfg = MatcherConfig(workers=1)
    naive_groups, t_naive_u = timed(naive_unique_groups, samples, naive_cfg)
    rng = np.random.default_rng(args.seed + 1)
    subset = sorted(rng.choice(len(samples), min(args.naive_subset, len(samples)), replace=False))
    sub_samples = [samples[i] for i in subset]
    naive_novel, t_naive_n_sub = timed(naive_novelty_matches, sub_samples, ref_ids, refs, naive_cfg)
    fast_sub, t_fast_n_sub = timed(novelty_matches, sub_samples, index, fast_cfg)

    naive_n_extrapolated = t_naive_n_sub * len(samples) / len(subset)
    fast_total_warm = t_load + t_fast_u + t_fast_n
    fast_total_cold = t_build + t_fast_u + t_fast_n
    naive_total = t_naive_u + naive_n_extrapolated
    result = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "started_utc": started,
        "machine": {
            **machine,
            "cpu_count": machine["cores"],
            "cpu_model": machine["cpu"],
            "loadavg_before": machine["load_average"],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "inputs": {
            "n_samples": len(samples),
            "n_reference": len(refs),
            "reference": "mp_20/train_partial",
            "naive_novelty_subset": len(subset),
            "workers_fast": args.workers,
            "seed": args.seed,
        },
        "seconds": {
            "fast_index_build": t_build,
            "fast_index_load": t_load,
            "fast_uniqueness": t_fast_u,
            "fast_novelty": t_fast_n,
            "fast_total_warm_index": fast_total_warm,
            "fast_total_cold_index": fast_total_cold,
            "naive_uniqueness": t_naive_u,
            "naive_novelty_subset_measured": t_naive_n_sub,
            "fast_novelty_subset": t_fast_n_sub,
            "naive_novelty_extrapolated_all": naive_n_extrapolated,
            "naive_total_extrapolated": naive_total,
        },
        "speedup": {
            "uniqueness_measured": t_naive_u / t_fast_u,
            "novelty_subset_measured_warm_index": t_naive_n_sub / t_fast_n_sub,
            "total_vs_extrapolated_naive_warm_index": naive_total / fast_total_warm,
            "total_vs_extrapolated_naive_cold_index": naive_total / fast_total_cold,
        },
        "verdicts": {
            "uniqueness_identical": fast_groups == naive_groups,
            "n_unique_groups": len(set(fast_groups)),
            "novelty_subset_identical": [fast_novel[i] for i in subset] == naive_novel,
            "novelty_subset_identical_rerun": fast_sub == naive_novel,
            "n_novel_all_fast": sum(h is None for h in fast_novel),
            "n_matched_subset": sum(h is not None for h in naive_novel),
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"{args.name}.json", result)
    s, v, sp = result["seconds"], result["verdicts"], result["speedup"]
    n, m = len(samples), len(subset)
    rows = [
        ("step", "fast (s)", "naive (s)"),
        ("---", "---", "---"),
        ("reference index build (once, persisted)", f"{s['fast_index_build']:.1f}", "-"),
        ("reference index load", f"{s['fast_index_load']:.1f}", "-"),
        (f"uniqueness, all {n}", f"{s['fast_uniqueness']:.1f}", f"{s['naive_uniqueness']:.1f}"),
        (
            f"novelty, subset of {m}",
            f"{s['fast_novelty_subset']:.1f}",
            f"{s['naive_novelty_subset_measured']:.1f}",
        ),
        (
            f"novelty, all {n}",
            f"{s['fast_novelty']:.1f}",
            f"{s['naive_novelty_extrapolated_all']:.0f} (extrapolated)",
        ),
        (
            "total, warm index",
            f"{s['fast_total_warm_index']:.1f}",
            f"{s['naive_total_extrapolated']:.0f} (extrapolated)",
        ),
    ]
    table = "\n".join("| " + " | ".join(r) + " |" for r in rows)
    md = f"""# Matching benchmark (uniqueness + novelty)

Command: `{result["command"]}`; started {started} UTC on {result["machine"]["cpu_count"]} cores
({result["machine"]["cpu_model"]}); load average (1, 5, 15 min) before
{result["machine"]["loadavg_before"]}, after {result["machine"]["loadavg_after"]}.

{len(samples)} samples (MP-20 test/val + perturbed duplicates + perturbed train copies) against
{len(refs)} reference crystals (`mp_20/train_partial`). Fast path: {args.workers} workers.

{table}

Speedups: uniqueness {sp["uniqueness_measured"]:.2f}x (measured); novelty on the subset
{sp["novelty_subset_measured_warm_index"]:.0f}x (measured); total
{sp["total_vs_extrapolated_naive_warm_index"]:.0f}x with a warm index,
{sp["total_vs_extrapolated_naive_cold_index"]:.0f}x including the one-off index build (naive
novelty extrapolated linearly from the {len(subset)}-sample subset).

Verdicts identical: uniqueness {v["uniqueness_identical"]} ({v["n_unique_groups"]} groups),
novelty on the subset {v["novelty_subset_identical"]} ({v["n_matched_subset"]} matched).
"""
    write_text_atomic(RESULTS / f"{args.name}.md", md)
    print(md)


if __name__ == "__main__":
    main()
