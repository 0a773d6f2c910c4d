"""MCFlow coordinate-flow ablation: does the network learn the coordinate velocity at all?

Trains ``cpu-small`` (or ``--profile``) for a few minutes with one variant of the
coordinate inputs / loss, then measures on held-out crystals

- the coordinate velocity loss at fixed structure times ``s`` (types known, ``t = 1``),
  with the global translation removed, beside the same loss of a model predicting zero
  (equal values = nothing learned about where atoms go);
- CSP match rate / RMSE on the first ``--n-csp`` MP-20 test compositions (1 sample, 50
  steps, with and without noisy guidance);
- distinct elements and atoms per crystal of ``--n-dng`` DNG samples (50 steps);
- with ``--anneal c …``, the guided CSP and the DNG samples again for each inference
  anti-annealing slope ``c`` (``sample.coord_anneal_slope``; DNG adds validity and P1).

``--checkpoint`` evaluates an existing checkpoint instead of training one.

Usage (variants were run two at a time, one thread each, on the 2-core machine)::

    .venv/bin/python benchmarks/mcflow_ablation.py --name base --minutes 10
    .venv/bin/python benchmarks/mcflow_ablation.py --name rg4 --minutes 10 --freq 4 --relgeo
    .venv/bin/python benchmarks/mcflow_ablation.py --name p16 --minutes 10 --freq 4 --relgeo \
        --tfree --pair-freq 16
    .venv/bin/python benchmarks/mcflow_ablation.py --name anneal --minutes 12 --freq 4 \
        --relgeo --tfree --pair-freq 16 --threads 2 --anneal 0 5 10
    .venv/bin/python benchmarks/mcflow_ablation.py --name w150t4 --minutes 10 --freq 4 \
        --relgeo --tfree --pair-freq 16 --w-coords 150 --w-types 4
    .venv/bin/python benchmarks/mcflow_ablation.py --name tiny --profile tiny \
        --train-data sample --freq 4 --relgeo --tfree

Ingests MP-20 ``train_partial`` (or, with ``--train-data sample``, the 1,000 bundled
crystals) and the first ``--n-csp`` test crystals with
``benchmarks/mcflow_benchmark.py``'s prepare stage on first use (cached after that).
Writes ``data/cache/mcflow_ablation/res_<name>.json``; the table of recorded runs is
``benchmarks/results/mcflow_ablation.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import mcflow_benchmark as mb
from benchmarks.machine import write_profile
from models.contract import SampleRequest, TrainRequest
from models.mcflow import api
from models.mcflow.config import resolve_config
from models.registry import get_model
from tasks.core.paths import REPO_ROOT, SAMPLES_DIR

OUT = REPO_ROOT / "data" / "cache" / "mcflow_ablation"
log = logging.getLogger(__name__)


def dng_sanity(checkpoint: Path, n: int, anneal_slope: float) -> dict[str, Any]:
    """Distinct elements, atoms, validity and P1 of ``n`` DNG samples (50 steps, seed 0).

    The anti-annealing slope is an MCFlow sampling setting, so this calls the model's own
    :func:`models.mcflow.api.sample` with the contract's request and the slope beside it.
    """
    request = SampleRequest(checkpoint=checkpoint, n=n, steps=50)
    records = api.sample(request, anneal_slope=anneal_slope)
    ok = [r.to_structure() for r in records if r.status == "ok"]
    return {
        "n_ok": len(ok),
        "mean_distinct_elements": float(np.mean([len(s.composition) for s in ok])),
        **mb.dng_metrics(records, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--profile", default="cpu-small", help="MCFlow profile (S on a GPU)")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--freq", type=int, default=1, help="network.coord_frequencies")
    parser.add_argument("--relgeo", action="store_true", help="network.geometry: pairs")
    parser.add_argument("--pair-freq", type=int, default=None, help="network.pair_frequencies")
    parser.add_argument("--edge-hidden", type=int, default=0, help="network.edge_hidden")
    parser.add_argument("--pair-dist", type=int, default=0, help="network.pair_distances")
    parser.add_argument("--n-dng", type=int, default=200, help="DNG samples for the sanity row")
    parser.add_argument("--w-types", type=float, default=None, help="flow.w_types")
    parser.add_argument("--w-coords", type=float, default=None, help="flow.w_coords")
    parser.add_argument(
        "--w-cell", type=float, default=None, help="flow.w_lengths and flow.w_angles"
    )
    parser.add_argument("--tfree", action="store_true", help="flow.translation_free")
    parser.add_argument("--coords-only", action="store_true", help="only the coordinate loss")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-csp", type=int, default=200)
    parser.add_argument(
        "--anneal", type=float, nargs="*", default=[], help="anti-annealing slopes to compare"
    )
    parser.add_argument("--checkpoint", type=Path, help="evaluate this checkpoint, no training")
    parser.add_argument(
        "--train-data",
        choices=["train_partial", "sample"],
        default="train_partial",
        help="MP-20 train_partial, or the 1,000 bundled crystals the quick profile trains on",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)
    if args.train_data == "sample":
        dataset = mb.prepare_csv(
            SAMPLES_DIR / "mp20_train_sample1000.csv.gz", "mp20_sample/train", None, workers=2
        )
    else:
        dataset = mb.prepare("train_partial", None, workers=2)
    run = OUT / f"run_{args.name}"
    cfg = resolve_config(args.profile)
    cfg.train.max_time_s = args.minutes * 60
    cfg.train.progress = False
    cfg.network.coord_frequencies = args.freq
    cfg.network.geometry = "pairs" if args.relgeo else "paper"
    cfg.network.pair_frequencies = args.pair_freq
    cfg.network.edge_hidden = args.edge_hidden
    cfg.network.pair_distances = args.pair_dist
    cfg.flow.translation_free = args.tfree
    if args.w_types is not None:
        cfg.flow.w_types = args.w_types
    if args.w_coords is not None:
        cfg.flow.w_coords = args.w_coords
    if args.w_cell is not None:
        cfg.flow.w_lengths = cfg.flow.w_angles = args.w_cell
    if args.coords_only:
        cfg.flow.w_types = cfg.flow.w_lengths = cfg.flow.w_angles = 0.0
        cfg.validation.n_samples = 0
    if args.checkpoint is None:
        profile = write_profile(cfg, run / "profile.yaml")
        get_model("mcflow").train(TrainRequest(profile=str(profile), dataset=dataset, out_dir=run))
    checkpoint = args.checkpoint or run / "latest.pt"
    result: dict[str, Any] = {
        "name": args.name,
        "command": "python " + " ".join(sys.argv),
        "loss_by_s": mb.coord_loss_by_s(checkpoint, dataset),
    }
    test = mb.prepare("test", args.n_csp, workers=2)
    targets = mb.csp_targets(test)
    csp = SampleRequest(checkpoint=checkpoint, task="csp", structures=test, steps=50)
    for key, weight in (("csp_noguide", 1.0), ("csp_guided", None)):  # None: the profile's
        records = get_model("mcflow").sample(csp.model_copy(update={"guidance": weight}))
        result[key] = mb.csp_metrics(targets, records, 1, 1)
    result["dng"] = dng_sanity(checkpoint, args.n_dng, 0.0)
    result["anneal"] = []
    for slope in args.anneal:
        records = api.sample(csp, anneal_slope=slope)
        row = {"slope": slope, "csp_guided": mb.csp_metrics(targets, records, 1, 1)}
        row["dng"] = dng_sanity(checkpoint, args.n_dng, slope)
        log.info("anneal %s", row)
        result["anneal"].append(row)
    lines = [json.loads(x) for x in (checkpoint.parent / "metrics.jsonl").open()]
    result["steps"] = [x for x in lines if x["split"] == "train"][-1]["step"]
    result["val"] = [x for x in lines if x["split"] == "val"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"res_{args.name}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "val"}, indent=1))


if __name__ == "__main__":
    main()
