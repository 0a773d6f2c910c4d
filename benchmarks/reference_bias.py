"""How far relaxing with the MLIP lowers a reference phase's energy below its single point.

Run from the repository root on a quiet machine::

    .venv/bin/python -m benchmarks.reference_bias --n 500
    .venv/bin/python -m benchmarks.reference_bias --n 200 --mlip sevennet

Draws ``--n`` random distinct phases (seed 0) of every MP-20 and MPTS-52 split in
``../shared/data``, computes the MLIP's (default CHGNet's) energy at the DFT geometry (a
single point) and after a relaxation with the pipeline's default settings (FIRE on a
Fréchet cell filter, fmax 0.05 eV/Å, 300 steps), and reports the drop
``E_single point − E_relaxed`` (eV/atom): mean, median, 95th percentile and maximum, overall
and per element family (a phase counts for every family one of its elements belongs to). A
hull of single-point references sits higher than one of relaxed references by about this
drop, so relaxed candidates look more stable by about as much. Writes
``benchmarks/results/reference_bias.{json,md}`` for CHGNet and
``reference_bias_<mlip>.{json,md}`` for another MLIP (its table's ``--bias``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Element

from benchmarks.machine import RESULTS_DIR, machine_info, save_results
from tasks.core.paths import shared_data_dir
from tasks.core.records import STATUS_OK
from tasks.mlip.backends import load_mlip
from tasks.mlip.reference_table import EnergyDrop, default_sources, distinct_entries
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import MLIPConfig, RelaxConfig

FAMILIES = {
    "alkali": lambda e: e.is_alkali,
    "alkaline earth": lambda e: e.is_alkaline,
    "3d transition metal": lambda e: e.is_transition_metal and e.row == 4,
    "4d transition metal": lambda e: e.is_transition_metal and e.row == 5,
    "5d transition metal": lambda e: e.is_transition_metal and e.row == 6,
    "lanthanide": lambda e: e.is_lanthanoid,
    "actinide": lambda e: e.is_actinoid,
    "p-block metal / metalloid": lambda e: e.is_post_transition_metal or e.is_metalloid,
    "pnictogen (N, P)": lambda e: e.symbol in ("N", "P"),
    "chalcogen": lambda e: e.is_chalcogen,
    "halogen": lambda e: e.is_halogen,
    "H, B, C": lambda e: e.symbol in ("H", "B", "C"),
}


def families(formula: str) -> list[str]:
    """The element families of a composition (each family once)."""
    elements = [Element(el.symbol) for el in Composition(formula).elements]
    return [name for name, test in FAMILIES.items() if any(test(e) for e in elements)]


def stats(values: np.ndarray) -> dict[str, float]:
    """Mean, median, 95th percentile and maximum, and the count (a table's ``EnergyDrop``)."""
    return EnergyDrop(
        n=int(values.size),
        mean=float(values.mean()),
        median=float(np.median(values)),
        p95=float(np.percentile(values, 95)),
        max=float(values.max()),
    ).model_dump()


def main() -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--workers", type=int, default=0, help="0 = all cores")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mlip", default="chgnet", help="chgnet | sevennet | mace | matgl")
    parser.add_argument("--model", default=None, help="The MLIP's model (default its own).")
    args = parser.parse_args()
    mlip = MLIPConfig(name=args.mlip, model=args.model)
    version = load_mlip(mlip).version
    before = machine_info()
    entries = distinct_entries(default_sources(shared_data_dir()))
    rng = np.random.default_rng(args.seed)
    picked = [entries[i] for i in sorted(rng.choice(len(entries), args.n, replace=False))]
    items = []
    for entry in picked:
        structure, _ = entry.parse()
        if structure is not None:
            items.append((entry.id, structure.to_json()))
    start = time.perf_counter()
    single = relax_items(items, mlip, RelaxConfig(steps=0, scheduler="serial"))
    t_single = time.perf_counter() - start
    start = time.perf_counter()
    relaxed = relax_items(items, mlip, RelaxConfig(n_workers=args.workers, chunk_size=4))
    t_relax = time.perf_counter() - start
    table = single[["id", "formula", "n_atoms", "energy_per_atom", "status"]].merge(
        relaxed[["id", "energy_per_atom", "status", "converged", "steps"]],
        on="id",
        suffixes=("_single_point", "_relaxed"),
    )
    ok = table[(table["status_single_point"] == STATUS_OK) & (table["status_relaxed"] == STATUS_OK)]
    drop = ok["energy_per_atom_single_point"] - ok["energy_per_atom_relaxed"]
    ok = ok.assign(drop=drop)
    per_family = {}
    for family in FAMILIES:
        mask = ok["formula"].map(lambda f, fam=family: fam in families(f))
        if mask.any():
            per_family[family] = stats(ok.loc[mask, "drop"].to_numpy())
    overall = stats(ok["drop"].to_numpy())
    result = {
        "machine": before,
        "mlip_version": version,
        "load_after": list(os.getloadavg()),
        "n_drawn": len(picked),
        "n_compared": len(ok),
        "n_failed": int(len(table) - len(ok)),
        "n_converged": int(ok["converged"].astype(bool).sum()),
        "relax_settings": RelaxConfig().model_dump(mode="json"),
        "single_point_s": t_single,
        "relax_s": t_relax,
        "drop_eV_per_atom": overall,
        "drop_by_family": per_family,
        "largest": ok.nlargest(5, "drop")[["id", "formula", "drop"]].to_dict(orient="records"),
    }
    lines = [
        f"# {version}: relaxed vs single-point energies of reference phases",
        "",
        f"Command: `python -m benchmarks.reference_bias {' '.join(sys.argv[1:])}`; "
        f"machine: {before['cpu']}, {before['cores']} cores, load {before['load_average']} before, "
        f"{[round(v, 2) for v in os.getloadavg()]} after; {before['date_utc']} UTC.",
        "",
        f"{len(ok)} of {len(picked)} random distinct MP-20 / MPTS-52 phases compared "
        f"({result['n_failed']} failed; {result['n_converged']} relaxations converged to "
        f"fmax 0.05 eV/Å within 300 steps). Single points {t_single:.0f} s, relaxations "
        f"{t_relax:.0f} s.",
        "",
        "Drop E(single point at the DFT geometry) − E(relaxed), eV/atom:",
        "",
        "| phases | n | mean | median | 95th pct | max |",
        "| --- | --- | --- | --- | --- | --- |",
        "| all | {n} | {mean:.4f} | {median:.4f} | {p95:.4f} | {max:.4f} |".format(**overall),
    ]
    lines += [
        f"| {family} | {s['n']} | {s['mean']:.4f} | {s['median']:.4f} | {s['p95']:.4f} | "
        f"{s['max']:.4f} |"
        for family, s in per_family.items()
    ]
    lines += ["", "Largest drops: " + ", ".join(
        f"{r['id']} {r['formula']} {r['drop']:.3f}" for r in result["largest"]
    ), ""]  # fmt: skip
    name = "reference_bias" if args.mlip == "chgnet" else f"reference_bias_{args.mlip}"
    save_results(name, result, "\n".join(lines))
    pd.DataFrame(ok).to_csv(RESULTS_DIR / f"{name}_rows.csv.gz", index=False)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
