"""SymADiT sampling throughput of one checkpoint at given torch thread counts.

Usage::

    .venv/bin/python benchmarks/symadit_sampling_speed.py CHECKPOINT --threads 1 2 -n 1000

Each thread count: a 64-sample warm-up, then ``-n`` samples (seed 7, the profile's steps and
CFG) timed from the first ODE step through decoding, expansion and overlap checks (no files
written). Prints one line per thread count; run it from two checkouts for before / after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.symadit.model import SymADiT
from models.symadit.sampling import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("-n", "--n-samples", type=int, default=1000)
    args = parser.parse_args()
    model = SymADiT.load(args.checkpoint)
    for threads in args.threads:
        torch.set_num_threads(threads)
        generate(model, 64, seed=1, progress=False)
        start = time.perf_counter()
        records = generate(model, args.n_samples, seed=7, progress=False)
        seconds = time.perf_counter() - start
        ok = sum(r.status == "ok" for r in records)
        print(
            f"threads {threads}: {seconds:.1f} s, {args.n_samples / seconds:.1f} crystals/s, "
            f"{ok} of {args.n_samples} expanded"
        )


if __name__ == "__main__":
    main()
