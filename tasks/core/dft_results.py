"""The DFT stage's per-candidate outcome, a record every wing that learns from DFT reads.

:func:`tasks.dft.collect.write_results` writes ``dft_results.json`` (a JSON list of
:class:`DftResult` rows with their pymatgen entries); a later round's DFT hull and the MLIP
fine-tuning read it back with :func:`read_dft_results`, by attribute.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any


@dataclass
class DftResult:
    """One candidate's DFT outcome (a row of ``dft_results``)."""

    id: str
    calc_id: str
    formula: str
    dft_status: str
    reason: str = ""
    n_elements: int = 0
    energy_per_atom: float | None = None
    corrected_energy_per_atom: float | None = None
    e_hull_dft: float | None = None
    decomposition: str = ""
    stable: bool = False
    metastable: bool = False
    entry: dict[str, Any] | None = None


def read_dft_results(path: str | Path) -> list[DftResult]:
    """The rows of a ``dft_results.json`` file.

    Raises
    ------
    ValueError
        The file is not a list of DFT results (the message names the file and the keys
        this version does not know or misses).
    """
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list):
        raise ValueError(f"{path}: a dft_results file holds a JSON list of results")
    known = {f.name for f in fields(DftResult)}
    out = []
    for i, row in enumerate(rows):
        try:
            out.append(DftResult(**row))
        except TypeError:
            given = set(row) if isinstance(row, dict) else set()
            required = {f.name for f in fields(DftResult) if f.default is MISSING}
            raise ValueError(
                f"{path}: row {i} is not a DFT result this version reads (unknown keys: "
                f"{sorted(given - known)}, missing: {sorted(required - given)}); rerun the DFT "
                "stage that wrote it"
            ) from None
    return out
