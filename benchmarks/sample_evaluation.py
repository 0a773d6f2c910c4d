"""The papers' de novo evaluation of a benchmark's samples, shared by both model benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def evaluate_records(
    records: list[Any], reference: Path, workers: int, seed: int, label: str
) -> dict[str, Any]:
    """:func:`tasks.evaluate.funnel.evaluate_samples` over every requested sample.

    Parameters
    ----------
    records
        Sample records (``status``, ``reason``, ``to_structure()``); failed samples count
        as invalid.
    reference
        The training set (CSV or records parquet): novelty reference and the distribution
        the sample-sanity figures compare with.
    workers, seed
        Matching processes and the seed of the novelty draw.
    label
        The method name of the paper-style row.

    Returns
    -------
    dict
        :class:`tasks.evaluate.metrics.EvaluationMetrics` as a dict (validity, uniqueness,
        novelty, distances, P1, distinct elements, atoms and orbits per crystal) with the
        rendered paper row under ``paper_row_markdown``.
    """
    from tasks.evaluate.funnel import Reference, evaluate_samples
    from tasks.evaluate.metrics import paper_row
    from tasks.evaluate.settings import EvaluateConfig

    samples = [(r.id, r.to_structure() if r.status == "ok" else None, r.reason) for r in records]
    config = EvaluateConfig(seed=seed, workers=workers)
    result = evaluate_samples(samples, Reference(reference, config), config)
    metrics = result.metrics.model_dump()
    metrics["paper_row_markdown"] = paper_row(result.metrics, label)
    return metrics


def sanity_lines(metrics: dict[str, Any]) -> list[str]:
    """Markdown table: the samples' distinct elements, orbits and atoms against the training set."""
    d = metrics["distribution"]
    lines = [
        "| quantity | generated | training set |",
        "| --- | --- | --- |",
    ]
    for name, key in (
        ("distinct elements per crystal (mean)", "elements"),
        ("Wyckoff orbits per crystal (mean)", "orbits"),
        ("atoms per cell (mean)", "atoms"),
    ):
        lines.append(f"| {name} | {d[key]['generated']['mean']:.2f} | "
                     f"{d[key]['reference']['mean']:.2f} |")  # fmt: skip
    lines += [
        f"| P1 fraction | {d['p1_rate']:.3f} | {d['reference_p1_rate']:.3f} |",
        f"| d_SG / d_W / d_N | {d['d_sg']:.3f} / {d['d_w']:.3f} / {d['d_n']:.3f} | 0 |",
        f"| d_elements (element frequencies, JS distance) | {d['d_elements']:.3f} | 0 |",
    ]
    return lines
