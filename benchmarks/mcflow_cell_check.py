"""Where MCFlow's CSP predictions fail: the cell's shape, or the atoms inside a right cell.

For the first ``--n`` MP-20 test compositions, one CSP sample each (``--steps``, 100 as in
``mcflow_benchmark.py``; ``--guided`` for noisy guidance, as its 1-sample row) is compared
with its target in two ways:

- **cell shape**: the predicted cell, scaled to the target's volume, maps onto the target's
  cell within the matcher's own tolerances (``Lattice.find_all_mappings`` with
  ``ltol = 0.3`` and ``angle_tol = 10°``, the CSP matcher's values). ``StructureMatcher``
  scales volumes the same way before it compares, so a prediction whose cell fails this
  cannot match (primitive cells on both sides);
- **match**: the CSP metric's own verdict (:func:`tasks.evaluate.csp_metrics.evaluate_csp`:
  ``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10).get_rms_dist``, as DiffCSP).

Usage::

    .venv/bin/python benchmarks/mcflow_cell_check.py CHECKPOINT --n 500 --name NAME

Needs the test records of ``benchmarks/mcflow_benchmark.py``'s prepare stage (made on first
use). Writes ``benchmarks/results/mcflow_cell_check_<NAME>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from pymatgen.core import Structure

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import benchmarks.mcflow_benchmark as mb
from benchmarks.machine import machine_info, save_results
from models.contract import SampleRequest
from models.registry import get_model
from tasks.evaluate.csp_metrics import evaluate_csp
from tasks.evaluate.settings import CSPConfig

LTOL, ANGLE_TOL = CSPConfig().matcher.ltol, CSPConfig().matcher.angle_tol


def cell_shape_agrees(target: Structure, predicted: Structure) -> bool:
    """Whether ``predicted``'s cell, at ``target``'s volume, maps onto ``target``'s cell."""
    scaled = predicted.lattice.scale(target.volume)
    mappings = target.lattice.find_all_mappings(scaled, ltol=LTOL, atol=ANGLE_TOL)
    return next(mappings, None) is not None


def main() -> None:
    """Sample, judge and write the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--name", required=True, help="results file suffix")
    parser.add_argument("--n", type=int, default=500, help="test compositions")
    parser.add_argument("--guided", action="store_true", help="noisy guidance")
    parser.add_argument("--steps", type=int, default=100, help="integration steps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_info()
    test = mb.prepare("test", args.n, workers=2)
    ids, targets = (list(column) for column in zip(*mb.csp_targets(test), strict=True))
    request = SampleRequest(
        checkpoint=args.checkpoint,
        task="csp",
        structures=test,
        steps=args.steps,
        guidance=None if args.guided else 1.0,  # None: the profile's weight (k = 1)
    )
    by_id = {r.extra["source_id"]: r for r in get_model("mcflow").sample(request)}
    predicted = [by_id[i].to_structure() if by_id[i].status == "ok" else None for i in ids]
    config = CSPConfig(k_values=(1,))
    config.matcher.workers = args.threads
    _, verdicts = evaluate_csp(
        list(zip(ids, targets, strict=True)),
        {i: [p] for i, p in zip(ids, predicted, strict=True)},
        config,
    )
    shape_ok = matched = matched_in_wrong_cell = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for target, prediction, verdict in zip(targets, predicted, verdicts, strict=True):
            shape = prediction is not None and cell_shape_agrees(target, prediction)
            match = verdict.rms_at_k[1] is not None
            shape_ok += shape
            matched += match
            matched_in_wrong_cell += match and not shape
    built = sum(p is not None for p in predicted)
    n = len(targets)
    result = {
        "checkpoint": str(args.checkpoint),
        "machine": machine,
        "n_compositions": n,
        "guided": args.guided,
        "steps": args.steps,
        "n_built": built,
        "n_cell_shape_ok": shape_ok,
        "n_matched": matched,
        "n_matched_with_wrong_cell_shape": matched_in_wrong_cell,
    }
    markdown = "\n".join(
        [
            f"# MCFlow CSP: cell shape vs match ({args.name})",
            "",
            f"- date {machine['date_utc']} UTC; {machine['cpu']}, {machine['cores']} cores, "
            f"load average at the start {machine['load_average']}",
            f"- command: `python {' '.join(sys.argv)}`",
            f"- checkpoint `{args.checkpoint}`; first {n} MP-20 test compositions, one sample "
            f"each, {args.steps} steps, {'with' if args.guided else 'without'} noisy guidance",
            "",
            "| predictions built | cell shape right | matched | matched, cell shape wrong |",
            "| --- | --- | --- | --- |",
            f"| {built} / {n} | {shape_ok} ({100 * shape_ok / n:.1f} %) | "
            f"{matched} ({100 * matched / n:.1f} %) | {matched_in_wrong_cell} |",
            "",
            "Cell shape right: the predicted cell, scaled to the target's volume, maps onto the "
            f"target's within ltol {LTOL} and {ANGLE_TOL:g}° (the matcher's tolerances). "
            f"Of the predictions in a right-shaped cell, {matched - matched_in_wrong_cell} of "
            f"{shape_ok} ({100 * (matched - matched_in_wrong_cell) / max(shape_ok, 1):.1f} %) "
            "match.",
            "",
        ]
    )
    save_results(f"mcflow_cell_check_{args.name}", result, markdown)
    print(markdown)


if __name__ == "__main__":
    main()
