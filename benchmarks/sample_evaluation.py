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
    """Markdown table of the report's sample-sanity figures and red flags.

    The figures and limits are the report's own (:func:`tasks.pipeline.summary.sanity_rows`);
    ``metrics`` is what :func:`evaluate_records` returned.
    """
    from tasks.evaluate.metrics import EvaluationMetrics
    from tasks.pipeline.summary import sanity_rows

    fields = {k: v for k, v in metrics.items() if k != "paper_row_markdown"}
    lines = ["| quantity | generated | training set | flag |", "| --- | --- | --- | --- |"]
    for row in sanity_rows(EvaluationMetrics.model_validate(fields)):
        training = f"{row.training:.3f}" if row.limit is not None else "—"
        flag = f"FAR OFF (limit ±{row.limit:g})" if row.far_off else ""
        lines.append(f"| {row.quantity} | {row.generated:.3f} | {training} | {flag} |")
    return lines
