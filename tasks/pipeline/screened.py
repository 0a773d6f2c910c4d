"""The screened crystals of one model and round as one table a user can open.

Every crystal the MLIP screen relaxed, with its evidence side by side, joined on ``id``
from the round's own files (:class:`tasks.pipeline.summary.RoundFiles`): the evaluation's
verdicts (validity, space group, uniqueness, novelty, the matched reference and the known
phase it equals), the relaxation (status, energy, convergence, the relaxed structure), the
MLIP hull (E_hull, formation energy, verdicts, decomposition, flags) and, where the round
ran one, the DFT (or stand-in) result. Written under ``round-<k>/<model>/screened/``:

``screened.parquet``
    One row per relaxed crystal, the relaxed structure as pymatgen JSON in ``structure``.
``screened.csv``
    The same rows without the structure column (it names the CIF instead).
``relaxed.extxyz`` and ``cifs/<id>.cif``
    The relaxed structures of every relaxation that finished.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from tasks.core.atomic import atomic_write
from tasks.core.columns import Col
from tasks.core.records import STATUS_OK, structure_from_json
from tasks.core.structure_io import write_structures
from tasks.pipeline.summary import RoundFiles

#: The verdict columns the table keeps (the rest of the verdict table stays in filters/).
VERDICT_COLUMNS = [
    Col.ID, Col.VALID_STRUCT, Col.VALID_COMP, Col.SPACEGROUP, "is_p1", Col.IS_UNIQUE,
    Col.NOVEL, Col.MATCHED_REFERENCE, Col.KNOWN, "known_as",
]  # fmt: skip
#: The relaxation columns it keeps, renamed where the hull uses the same name.
RELAX_COLUMNS = {
    Col.ID: Col.ID,
    Col.STATUS: "relax_status",
    Col.REASON: "relax_reason",
    Col.FORMULA: Col.FORMULA,
    Col.N_ATOMS: Col.N_ATOMS,
    Col.ENERGY: Col.ENERGY,
    Col.ENERGY_PER_ATOM: Col.ENERGY_PER_ATOM,
    Col.CONVERGED: Col.CONVERGED,
    "steps": "relax_steps",
    Col.MLIP_VERSION: Col.MLIP_VERSION,
    Col.STRUCTURE: Col.STRUCTURE,
}
#: The hull columns it keeps.
HULL_COLUMNS = [
    Col.ID, Col.CHEMSYS, "e_form_per_atom", Col.E_HULL, Col.STABLE, Col.METASTABLE,
    "decomposition", "hull_status", "hull_reason", "n_reference_phases", "coverage_gaps",
    "flags", "flagged",
]  # fmt: skip


def screened_table(files: RoundFiles) -> pd.DataFrame | None:
    """The round's screened crystals with every stage's evidence, or ``None`` before the
    MLIP relaxation has run."""
    if not files.relaxed.is_file():
        return None
    relaxed = pd.read_parquet(files.relaxed)
    table = relaxed[[c for c in RELAX_COLUMNS if c in relaxed.columns]].rename(
        columns=RELAX_COLUMNS
    )
    verdicts = pd.read_parquet(files.verdicts)
    table = table.merge(
        verdicts[[c for c in VERDICT_COLUMNS if c in verdicts]], on=Col.ID, how="left"
    )
    if files.hull.is_file():
        hull = pd.read_parquet(files.hull)
        table = table.merge(hull[[c for c in HULL_COLUMNS if c in hull]], on=Col.ID, how="left")
    if files.dft_results.is_file():
        dft = pd.read_parquet(files.dft_results).drop(columns=[Col.STRUCTURE], errors="ignore")
        dft = dft.rename(columns={c: f"dft_{c}" for c in dft.columns if c != Col.ID and
                                  not c.startswith("dft_") and c != Col.E_HULL_DFT})  # fmt: skip
        table = table.merge(dft, on=Col.ID, how="left")
    table["cif"] = [
        f"cifs/{_file_name(i)}.cif" if s == STATUS_OK else ""
        for i, s in zip(table[Col.ID], table["relax_status"], strict=True)
    ]
    return table


def _file_name(ident: str) -> str:
    """The CIF name :func:`tasks.core.structure_io.write_structures` gives an id."""
    return ident.replace("/", "_").replace(":", "_")


def write_screened(files: RoundFiles) -> dict[str, Path]:
    """Write the round's screened table and relaxed structures (nothing before relaxation).

    A resumed run whose evidence has not changed leaves the files as they are.

    Returns
    -------
    dict
        Output kind (``table``, ``csv``, ``extxyz``, ``cifs``) → path.
    """
    table = screened_table(files)
    if table is None:
        return {}
    out = files.screened
    paths = {
        "table": out / "screened.parquet",
        "csv": out / "screened.csv",
        "extxyz": out / "relaxed.extxyz",
        "cifs": out / "cifs",
    }
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    if all(p.exists() for p in paths.values()) and paths["table"].read_bytes() == buffer.getvalue():
        return paths
    atomic_write(
        paths["csv"], lambda tmp: table.drop(columns=[Col.STRUCTURE]).to_csv(tmp, index=False)
    )
    done = table[(table["relax_status"] == STATUS_OK) & (table[Col.STRUCTURE] != "")]
    items = [
        (i, structure_from_json(s)) for i, s in zip(done[Col.ID], done[Col.STRUCTURE], strict=True)
    ]
    write_structures(items, paths["extxyz"])
    paths["cifs"].mkdir(parents=True, exist_ok=True)
    if items:
        write_structures(items, paths["cifs"])
    atomic_write(paths["table"], lambda tmp: tmp.write_bytes(buffer.getvalue()))  # last: the marker
    return paths
