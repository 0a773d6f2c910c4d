"""Benchmark: our evaluation on crystals other groups released, beside their published figures.

Every set in ``../shared/data/published_samples/`` (extxyz, one frame per crystal, as the
authors released them) goes through the product's own evaluation
(:func:`tasks.evaluate.funnel.evaluate_samples`, default settings: symmetry at pymatgen's
symprec 0.01 Å / 5°) against ``mp_20/train_partial``, and our figures are written beside the
ones published for exactly those files, with the differences. The symmetry figures are also
measured at symprec 0.1 Å, the tolerance this project used before, to show what that changed.

Published figures (``published_samples/README.md``):

- validity of these exact files: the DiffCSP paper (100.00 / 83.25 on its own sampling) and
  the WyFormer evaluation notebook (DiffCSP 100.00 / 83.22, CrystalFormer 93.39 / 84.98);
- the SymADiT paper's DiffCSP row (struct 99.93, comp 81.94, d_SG 0.85, d_W 0.40, d_N 0.24,
  P1 70.60), measured on another 10,000 DiffCSP samples: equal up to sampling noise.

Novelty is against ``train_partial`` (11,249 of MP-20's 27,136 training crystals), so it
reads high; the papers do not publish novelty for these files.

Run: ``.venv/bin/python -m benchmarks.conformance [--limit N] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.machine import machine_info, save_results
from tasks.core.paths import shared_data_dir
from tasks.core.structure_io import read_structures
from tasks.evaluate.distributions import distribution_metrics
from tasks.evaluate.funnel import Reference, evaluate_samples, run_symmetry
from tasks.evaluate.metrics import EvaluationMetrics, paper_row
from tasks.evaluate.settings import EvaluateConfig

#: Figures published for each released file: (source, {figure: value in the table's units}).
PUBLISHED: dict[str, list[tuple[str, dict[str, float]]]] = {
    "diffcsp_mp20_10k": [
        (
            "WyFormer notebook on these files",
            {"struct %": 100.00, "comp %": 83.22},
        ),
        ("DiffCSP paper (its own sampling)", {"struct %": 100.00, "comp %": 83.25}),
        (
            "SymADiT Table 1, DiffCSP row (other 10,000 samples)",
            {
                "struct %": 99.93,
                "comp %": 81.94,
                "d_SG": 0.85,
                "d_W": 0.40,
                "d_N": 0.24,
                "P1 %": 70.60,
            },
        ),
    ],
    "crystalformer_mp20_999": [
        ("WyFormer notebook on these files", {"struct %": 93.39, "comp %": 84.98}),
    ],
}
#: Decimals each figure is published with (the comparison rounds ours the same way).
DECIMALS = {"struct %": 2, "comp %": 2, "P1 %": 2, "d_SG": 2, "d_W": 2, "d_N": 2}


def our_figures(metrics: EvaluationMetrics) -> dict[str, float]:
    """Our evaluation's figures in the published tables' units."""
    d = metrics.distribution
    return {
        "struct %": 100 * metrics.structural_validity,
        "comp %": 100 * metrics.compositional_validity,
        "d_SG": d.d_sg,
        "d_W": d.d_w,
        "d_N": d.d_n,
        "P1 %": 100 * d.p1_rate,
    }


def compare(ours: dict[str, float], published: dict[str, float]) -> list[dict[str, Any]]:
    """One row per published figure: theirs, ours at their precision, and the difference."""
    rows = []
    for name, theirs in published.items():
        mine = round(ours[name], DECIMALS[name])
        rows.append(
            {"figure": name, "published": theirs, "ours": mine, "difference": mine - theirs}
        )
    return rows


def evaluate_set(
    path: Path, reference: Path, config: EvaluateConfig, limit: int | None
) -> dict[str, Any]:
    """Our evaluation of one released file, and its symmetry figures at symprec 0.1 too."""
    start = time.perf_counter()
    samples = read_structures(path, limit=limit)
    ref = Reference(reference, config)
    result = evaluate_samples(samples, ref, config)
    coarse = config.model_copy(update={"symprec": 0.1})
    valid = result.verdicts["valid_struct"].to_numpy()
    structures = [s for (_, s, _), ok in zip(samples, valid, strict=True) if ok and s is not None]
    at_coarse = distribution_metrics(
        run_symmetry(structures, coarse),
        Reference(reference, coarse).symmetry(),
        coarse.symprec,
        coarse.angle_tolerance,
    )
    ours = our_figures(result.metrics)
    return {
        "file": path.name,
        "n": len(samples),
        "metrics": result.metrics.model_dump(),
        "paper_row": paper_row(result.metrics, path.stem),
        "ours": ours,
        "at_symprec_0.1": {
            "P1 %": 100 * at_coarse.p1_rate,
            "d_SG": at_coarse.d_sg,
            "d_W": at_coarse.d_w,
            "d_N": at_coarse.d_n,
        },
        "comparisons": [
            {"source": source, "rows": compare(ours, figures)}
            for source, figures in PUBLISHED.get(path.stem, [])
        ],
        "seconds": round(time.perf_counter() - start, 1),
    }


def markdown(results: list[dict[str, Any]], info: dict[str, Any], command: str) -> str:
    """The record: per file, our paper row, then each published source beside ours."""
    lines = [
        "# Conformance: our evaluation on published samples",
        "",
        f"Command: `{command}`; {info['date_utc']} UTC on {info['cores']} cores "
        f"({info['cpu']}), load average at the start {info['load_average']}.",
        "",
        "Reference: `mp_20/train_partial` (11,249 crystals; novelty reads high against this "
        "partial training set). Symmetry figures at symprec 0.01 Å, angle tolerance 5° "
        "(pymatgen's defaults, the papers' \"determined by PyMatGen\"), for the samples and "
        "the reference alike; d_N counts atoms per primitive cell on both sides.",
        "",
    ]
    for r in results:
        lines += [f"## {r['file']} ({r['n']:,} crystals, {r['seconds']} s)", "", r["paper_row"], ""]
        for comparison in r["comparisons"]:
            lines += [
                f"**{comparison['source']}**",
                "",
                "| figure | published | ours | difference |",
                "| --- | --- | --- | --- |",
            ]
            lines += [
                f"| {row['figure']} | {row['published']:g} | {row['ours']:g} | "
                f"{row['difference']:+.2f} |"
                for row in comparison["rows"]
            ]
            lines.append("")
        coarse = r["at_symprec_0.1"]
        lines += [
            "At symprec 0.1 Å (this project's tolerance before 2026-12-07), for contrast: "
            f"P1 {coarse['P1 %']:.2f} %, d_SG {coarse['d_SG']:.3f}, d_W {coarse['d_W']:.3f}, "
            f"d_N {coarse['d_N']:.3f}.",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Evaluate every published set and write ``results/conformance.{json,md}``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N crystals of each set")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results-name", default="conformance")
    args = parser.parse_args(argv)
    data = shared_data_dir()
    info = machine_info()
    config = EvaluateConfig(workers=args.workers)
    sets = sorted((data / "published_samples").glob("*.extxyz"))
    reference = data / "mp_20" / "train_partial.csv.gz"
    results = [evaluate_set(path, reference, config, args.limit) for path in sets]
    command = "python -m benchmarks.conformance" + (f" --limit {args.limit}" if args.limit else "")
    save_results(
        args.results_name,
        {"machine": info, "config": config.model_dump(mode="json"), "sets": results},
        markdown(results, info, command),
    )


if __name__ == "__main__":
    main()
