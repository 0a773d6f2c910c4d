"""DFT hull: TaskDoc → ComputedStructureEntry → MP2020 corrections → E_hull → S.U.N. count.

Reference entries come from, in this order of preference, a per-chemical-system cache of
Materials Project entries (filled through ``mp-api`` when ``MP_API_KEY`` is set and the
package is installed), a user-supplied entries JSON file, and the project's own earlier DFT
results. As in the papers, the candidates are judged against the references only: they are
never added to the hull they are judged against. Stable: E_hull < 0 eV/atom; metastable:
E_hull < 0.1 eV/atom; both need at least two distinct elements.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from monty.json import MontyDecoder, MontyEncoder
from pydantic import Field
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from tasks import hpc
from tasks.atomic import atomic_write, write_json_atomic, write_text_atomic
from tasks.config import StrictModel

logger = logging.getLogger(__name__)

MP_API_KEY_ENV = "MP_API_KEY"


class HullConfig(StrictModel):
    """Where reference entries come from and how candidates are classified.

    Attributes
    ----------
    entries_file
        JSON list of reference ``ComputedEntry``/``ComputedStructureEntry`` dicts (MP
        entries exported with ``monty.serialization.dumpfn``), used offline.
    mp_cache_dir
        Per-chemical-system cache of Materials Project entries (``<chemsys>.json``); filled
        from ``mp-api`` when online, read as is otherwise.
    earlier_results
        ``dft_results.json`` files of earlier rounds: their completed entries join the
        references (the closed loop).
    correct_references
        Apply MP2020 corrections to the references too (use for raw-energy entries).
    stable_below, metastable_below
        E_hull thresholds in eV/atom (strict inequalities).
    """

    entries_file: Path | None = None
    mp_cache_dir: Path | None = None
    earlier_results: list[Path] = Field(default_factory=list)
    correct_references: bool = True
    stable_below: float = 0.0
    metastable_below: float = 0.1


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


def entry_from_task_output(output: dict[str, Any], entry_id: str) -> ComputedStructureEntry:
    """The ``ComputedStructureEntry`` of a stored atomate2 ``TaskDoc`` (its ``output`` dict).

    Uses the TaskDoc's own ``entry`` (energy, run type, POTCARs, Hubbard U) and its final
    structure.
    """
    entry = ComputedEntry.from_dict(output["entry"])
    return ComputedStructureEntry(
        structure=Structure.from_dict(output["structure"]),
        energy=entry.uncorrected_energy,
        parameters=entry.parameters,
        data=entry.data,
        entry_id=entry_id,
    )


def apply_mp2020(
    entries: list[ComputedEntry], check_potcar: bool = True
) -> tuple[list[ComputedEntry], dict[str, str]]:
    """Apply ``MaterialsProject2020Compatibility`` (GGA/GGA+U and anion corrections).

    Parameters
    ----------
    entries
        Entries to correct (copies are corrected, inputs are left alone).
    check_potcar
        Check the POTCAR symbols against MP's; turn off only for calculations run with a
        POTCAR.spec and no real POTCARs (dry runs, the test double).

    Returns
    -------
    tuple
        The corrected entries that are compatible, and ``{entry_id: reason}`` for the rest.
    """
    compat = MaterialsProject2020Compatibility(check_potcar=check_potcar)
    kept: list[ComputedEntry] = []
    dropped: dict[str, str] = {}
    for entry in entries:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                corrected = compat.process_entry(entry.copy(), on_error="raise")
        except Exception as err:
            dropped[str(entry.entry_id)] = f"MP2020 incompatible: {type(err).__name__}: {err}"
            continue
        if corrected is None:
            dropped[str(entry.entry_id)] = "MP2020 incompatible"
        else:
            kept.append(corrected)
    return kept, dropped


def chemsys(elements: list[str] | set[str]) -> str:
    """Materials Project chemical-system key, e.g. ``Cl-Na``."""
    return "-".join(sorted(elements))


def _load_entries(path: Path) -> list[ComputedEntry]:
    data = json.loads(path.read_text(), cls=MontyDecoder)
    return [e if isinstance(e, ComputedEntry) else ComputedEntry.from_dict(e) for e in data]


def _fetch_mp_entries(elements: list[str]) -> list[ComputedEntry] | None:
    key = os.environ.get(MP_API_KEY_ENV)
    if not key:
        return None
    try:
        from mp_api.client import MPRester
    except ImportError:
        logger.warning(
            "%s is set but mp-api is not installed (pip install '.[mp]')", MP_API_KEY_ENV
        )
        return None
    with MPRester(key) as mpr:
        return list(mpr.get_entries_in_chemsys(elements))


def mp_reference_entries(elements: list[str], cache_dir: Path) -> list[ComputedEntry]:
    """Materials Project entries of a chemical system, cached on disk.

    Reads ``<cache_dir>/<chemsys>.json``; when missing and online (``MP_API_KEY`` set,
    ``mp-api`` installed), fetches ``get_entries_in_chemsys`` and writes the cache.
    Offline and uncached, returns no entries.
    """
    path = Path(cache_dir).expanduser() / f"{chemsys(elements)}.json"
    if path.exists():
        return _load_entries(path)
    fetched = _fetch_mp_entries(elements)
    if fetched is None:
        return []
    write_text_atomic(path, json.dumps(fetched, cls=MontyEncoder))
    logger.info("cached %d MP entries for %s", len(fetched), chemsys(elements))
    return fetched


def reference_entries(
    elements: list[str], config: HullConfig, exclude_ids: set[str]
) -> list[ComputedEntry]:
    """All reference entries whose elements lie within ``elements``.

    ``exclude_ids`` (the candidates being judged) never enter the references.
    """
    refs: list[ComputedEntry] = []
    if config.mp_cache_dir is not None:
        refs += mp_reference_entries(elements, config.mp_cache_dir)
    if config.entries_file is not None:
        refs += _load_entries(config.entries_file.expanduser())
    for path in config.earlier_results:
        for row in json.loads(path.expanduser().read_text()):
            if row.get("entry") and row["calc_id"] not in exclude_ids:
                refs.append(MontyDecoder().process_decoded(row["entry"]))
    allowed = set(elements)
    return [
        e
        for e in refs
        if {el.symbol for el in e.composition.elements} <= allowed
        and str(e.entry_id) not in exclude_ids
    ]


def e_above_hull(entry: ComputedEntry, references: list[ComputedEntry]) -> tuple[float, str]:
    """Energy above the references' convex hull (eV/atom; negative below it).

    Raises
    ------
    ValueError
        When the references lack an elemental phase of the entry's system.
    """
    pd = PhaseDiagram(references)
    decomp, e_hull = pd.get_decomp_and_e_above_hull(entry, allow_negative=True)
    parts = " + ".join(
        f"{amount:.3f} {e.composition.reduced_formula}"
        for e, amount in sorted(decomp.items(), key=lambda kv: -kv[1])
    )
    return float(e_hull), parts


def classify(e_hull: float, n_elements: int, config: HullConfig) -> tuple[bool, bool]:
    """(stable, metastable) by the papers' rules."""
    multi = n_elements >= 2
    return multi and e_hull < config.stable_below, multi and e_hull < config.metastable_below


def hull_results(
    candidates: list[DftResult],
    entries: dict[str, ComputedStructureEntry],
    config: HullConfig,
    check_potcar: dict[str, bool],
) -> list[DftResult]:
    """Fill E_hull and stability for completed candidates.

    Parameters
    ----------
    candidates
        Results with ``dft_status == "completed"`` get an E_hull; others pass through.
    entries
        Uncorrected candidate entries by ``calc_id``.
    config
        Reference sources and thresholds.
    check_potcar
        Per ``calc_id``: whether its POTCARs can be checked (False for POTCAR.spec runs).
    """
    exclude = set(entries)
    out = []
    for res in candidates:
        if res.dft_status != "completed" or res.calc_id not in entries:
            out.append(res)
            continue
        raw = entries[res.calc_id]
        corrected, dropped = apply_mp2020([raw], check_potcar=check_potcar.get(res.calc_id, True))
        if not corrected:
            res.dft_status, res.reason = "incompatible", dropped.get(str(raw.entry_id), "")
            out.append(res)
            continue
        entry = corrected[0]
        elements = sorted(el.symbol for el in entry.composition.elements)
        refs = reference_entries(elements, config, exclude)
        if config.correct_references:
            refs, _ = apply_mp2020(refs)
        res.corrected_energy_per_atom = entry.energy_per_atom
        res.entry = entry.as_dict()
        try:
            res.e_hull_dft, res.decomposition = e_above_hull(entry, refs)
        except ValueError as err:
            res.dft_status, res.reason = "no_hull", f"references for {chemsys(elements)}: {err}"
            out.append(res)
            continue
        res.stable, res.metastable = classify(res.e_hull_dft, res.n_elements, config)
        out.append(res)
    return out


def format_rate(rate_percent: float, count: int) -> str:
    """The papers' notation, e.g. ``format_rate(5.53, 12) == "5.53 (12)"``."""
    return f"{rate_percent:.2f} ({count})"


def sun_summary(results: list[DftResult], vun_rate: float = 1.0) -> dict[str, Any]:
    """DFT S.U.N. and M.S.U.N. in the papers' notation.

    Parameters
    ----------
    results
        Collected results. Candidates sent to DFT form the denominator (failed or
        incompatible ones count as not stable); rejected inputs are only counted.
    vun_rate
        Fraction of generated crystals that are valid, unique and novel (the funnel before
        DFT), so that S.U.N. = ``vun_rate`` x stable fraction.

    Returns
    -------
    dict
        Counts per status, ``sun`` and ``msun`` strings (percent and count).
    """
    checked = [r for r in results if r.dft_status != "rejected"]
    n = len(checked)
    n_stable = sum(r.stable for r in results)
    n_meta = sum(r.metastable for r in results)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.dft_status] = counts.get(r.dft_status, 0) + 1
    scale = 100.0 * vun_rate / n if n else 0.0
    return {
        "n_candidates": n,
        "status_counts": counts,
        "n_stable": n_stable,
        "n_metastable": n_meta,
        "vun_rate": vun_rate,
        "sun": format_rate(scale * n_stable, n_stable),
        "msun": format_rate(scale * n_meta, n_meta),
    }


def results_as_rows(results: list[DftResult]) -> list[dict[str, Any]]:
    """Plain dicts (JSON-ready)."""
    return [asdict(r) for r in results]


def collect_results(workdir: str | Path, config: HullConfig) -> list[DftResult]:
    """Gather every calculation of a work directory into DFT results with E_hull.

    Completed calculations are read from their results store (the newest job output of
    the last attempt, i.e. the static when one was run); failed, still running and rejected
    candidates are reported with their status and reason, and never block the others.
    """
    workdir = Path(workdir).resolve()
    results: list[DftResult] = []
    entries: dict[str, ComputedStructureEntry] = {}
    check_potcar: dict[str, bool] = {}
    for st in hpc.calc_statuses(workdir):
        res = DftResult(
            id=st.candidate_id,
            calc_id=st.calc_id,
            formula=st.formula,
            dft_status=st.status,
            reason=st.reason,
            n_elements=len(Composition(st.formula).elements),
        )
        if st.status == hpc.COMPLETED:
            docs = hpc.load_outputs(workdir, st.calc_id, st.attempt)
            if docs:
                entry = entry_from_task_output(docs[0]["output"], entry_id=st.calc_id)
                res.energy_per_atom = entry.energy_per_atom
                entries[st.calc_id] = entry
                settings = hpc.read_calc(workdir, st.calc_id)["settings"]
                check_potcar[st.calc_id] = not settings.get("potcar_spec", False)
            else:
                res.dft_status, res.reason = hpc.FAILED, "completed but no output in the store"
        results.append(res)
    rejected_file = workdir / "rejected.json"
    if rejected_file.exists():
        for cid, reason in json.loads(rejected_file.read_text()).items():
            results.append(
                DftResult(id=cid, calc_id="", formula="", dft_status="rejected", reason=reason)
            )
    return hull_results(results, entries, config, check_potcar)


def write_results(workdir: str | Path, results: list[DftResult], summary: dict[str, Any]) -> Path:
    """Write ``dft_results.json`` (with entries), ``dft_results.parquet`` and ``dft_summary.json``.

    Returns
    -------
    Path
        The JSON results file (usable as ``HullConfig.earlier_results`` of a later round).
    """
    workdir = Path(workdir)
    rows = results_as_rows(results)
    path = write_text_atomic(
        workdir / "dft_results.json", json.dumps(rows, indent=1, cls=MontyEncoder)
    )
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "entry"} for r in rows])
    atomic_write(workdir / "dft_results.parquet", lambda tmp: table.to_parquet(tmp, index=False))
    write_json_atomic(workdir / "dft_summary.json", summary)
    return path
