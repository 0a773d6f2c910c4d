"""CP2K settings: energy convergence against time on a few MP-20 crystals.

Run from the repository root on a quiet machine (CP2K installed: ``make setup``)::

    .venv/bin/python -m benchmarks.cp2k_settings

Four small MP-20 test crystals of different kinds (an ionic halide, an sp metal, a
magnetic 3d alloy, an oxide) each run as a CP2K static through the product's own path
(atomate2 maker, local worker processes) at the default settings and with one setting
changed at a time: the plane-wave cutoff (300, 400, 500 Ry) and the k-point density (32, 64,
100 per Å⁻³ of reciprocal volume). Recorded per crystal and setting: the energy per atom, its
difference from the tightest setting of that axis (meV/atom) and CP2K's own wall time.
Writes ``benchmarks/results/cp2k_settings.{json,md}``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd
from monty.io import zopen

from benchmarks.machine import machine_info, save_results
from tasks.core.paths import REPO_ROOT
from tasks.core.structure_io import read_structures
from tasks.dft.local import run_batch_here
from tasks.dft.recomputed_hull import completed_entry
from tasks.dft.settings import Cp2kSettings
from tasks.dft.submit import SubmitReport, register_calculations
from tasks.dft.workdir import Candidate, calc_dir, calc_id_for

SAMPLE = REPO_ROOT / "data" / "samples" / "mp20_test_sample200.csv.gz"
CRYSTALS = ("mp-30031", "mp-9690", "mp-1418", "mp-997051")  # CaI2, Ca(AlGa)2, FeNi3, PdAuO2
CUTOFFS = (300.0, 400.0, 500.0)
DENSITIES = (32, 64, 100)


def cp2k_seconds(workdir: Path, calc_id: str) -> float:
    """CP2K's own total time of a calculation (the ``CP2K`` line of its timing table)."""
    (output,) = calc_dir(workdir, calc_id).glob("attempt-*/job_*/cp2k.out*")
    with zopen(output, "rt") as handle:
        lines = [line.split() for line in handle if line.startswith(" CP2K  ")]
    return float(lines[-1][-1])


def main() -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--crystals", nargs="+", default=list(CRYSTALS), help="MP ids of the sample to run"
    )
    args = parser.parse_args()
    before = machine_info()
    crystals = {
        ident: structure
        for ident, structure, _ in read_structures(SAMPLE)
        if ident in args.crystals and structure is not None
    }
    base = Cp2kSettings()
    variants = [("cutoff_ry", v) for v in CUTOFFS] + [("kpoints_density", v) for v in DENSITIES]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for axis, value in variants:
            settings = base.model_copy(update={axis: value})
            candidates = [Candidate(i, s) for i, s in crystals.items()]
            new = register_calculations(candidates, workdir, settings, SubmitReport())
            if new:
                run_batch_here(workdir, new, dict.fromkeys(new, 1), settings, args.workers)
            for candidate in candidates:
                calc_id = calc_id_for(candidate, settings)
                entry = completed_entry(workdir, calc_id)
                assert candidate.structure is not None
                rows.append(
                    {
                        "id": candidate.id,
                        "formula": candidate.structure.composition.reduced_formula,
                        "n_atoms": len(candidate.structure),
                        "axis": axis,
                        "value": value,
                        "energy_per_atom": None
                        if isinstance(entry, str)
                        else entry.energy_per_atom,
                        "failure": entry if isinstance(entry, str) else "",
                        "cp2k_s": None
                        if isinstance(entry, str)
                        else cp2k_seconds(workdir, calc_id),
                    }
                )
    table = pd.DataFrame(rows)
    tightest = table.loc[table.groupby(["id", "axis"])["value"].idxmax()].set_index(["id", "axis"])
    table["delta_mev"] = [
        1000 * (e - tightest.loc[(i, a), "energy_per_atom"])
        for i, a, e in zip(table["id"], table["axis"], table["energy_per_atom"], strict=True)
    ]
    lines = [
        "# CP2K settings: energy convergence against time",
        "",
        f"Command: `python -m benchmarks.cp2k_settings --workers {args.workers} --crystals "
        f"{' '.join(args.crystals)}`; machine: "
        f"{before['cpu']}, {before['cores']} cores, load {before['load_average']} before, "
        f"{[round(v, 2) for v in os.getloadavg()]} after; {before['date_utc']} UTC.",
        "",
        f"CP2K PBE statics through the product's path; defaults {base.cutoff_ry:.0f} Ry, "
        f"{base.kpoints_density} k-points per Å⁻³ of reciprocal volume, one setting changed "
        "at a time. "
        "ΔE: energy per atom minus that of the tightest value of the same axis (meV/atom); "
        "time: CP2K's own wall time, each calculation one process with one thread.",
        "",
        "| crystal | atoms | setting | ΔE (meV/atom) | time (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.id} {row.formula} | {row.n_atoms} | {row.axis} = {row.value:g} | "
            + (
                f"{row.delta_mev:+.1f} | {row.cp2k_s:.1f} |"
                if not row.failure
                else f"failed: {row.failure} | |"
            )
        )
    save_results(
        "cp2k_settings",
        {"machine": before, "load_after": list(os.getloadavg()), "rows": table.to_dict("records")},
        "\n".join(lines) + "\n",
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
