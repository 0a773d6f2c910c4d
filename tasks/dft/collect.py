"""DFT hull: TaskDoc → ComputedStructureEntry → MP2020 corrections → E_hull → S.U.N. count.

Reference entries come from, in this order of preference, a per-chemical-system cache of
Materials Project entries (filled through ``mp-api`` when ``MP_API_KEY`` is set and the
package is installed), a user-supplied entries JSON file, and the project's own earlier DFT
results. As in the papers, the candidates are judged against the references only: they are
never added to the hull they are judged against. Stable: E_hull < 0 eV/atom; metastable:
E_hull < 0.1 eV/atom; both need at least two distinct elements
(:class:`tasks.core.stability.StabilityRule`, shared with the MLIP hull).

Entries files are decoded without importing what they name: every ``@module`` in them must
be a pymatgen module (:func:`decode_entries`), so a crafted file cannot make the pipeline
import arbitrary code.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from monty.json import MontyEncoder
from pymatgen.analysis.phase_diagram import PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.entries.compatibility import MaterialsProject2020Compatibility
from pymatgen.entries.computed_entries import ComputedEntry, ComputedStructureEntry

from tasks.core.atomic import atomic_write, write_json_atomic, write_text_atomic
from tasks.core.dft_results import DftResult, read_dft_results
from tasks.core.stability import StabilityRule
from tasks.dft.settings import DftHullConfig
from tasks.dft.submit import calc_statuses
from tasks.dft.workdir import COMPLETED, FAILED, load_outputs, read_calc, read_rejected

logger = logging.getLogger(__name__)

MP_API_KEY_ENV = "MP_API_KEY"

#: Why a CP2K result collected without its recomputed competing phases has no E_hull.
CP2K_NEEDS_ITS_HULL = (
    "CP2K energies are placed only on a hull of competing phases recomputed with the same "
    "settings (dft.mode: cp2k), never on Materials Project's entries"
)
#: ``dft_status`` values beyond the calculation states of :mod:`tasks.dft.workdir`.
REJECTED = "rejected"
INCOMPATIBLE = "incompatible"
NO_HULL = "no_hull"


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


#: Module prefixes an entries file may name (``@module``); anything else is refused.
ALLOWED_MODULES = ("pymatgen.",)
_ENTRY_CLASSES: dict[str, type[ComputedEntry]] = {
    "ComputedEntry": ComputedEntry,
    "ComputedStructureEntry": ComputedStructureEntry,
}


def _check_modules(obj: Any, where: str) -> None:
    if isinstance(obj, dict):
        module = obj.get("@module")
        if module is not None and not str(module).startswith(ALLOWED_MODULES):
            raise ValueError(f"{where}: refusing to decode @module {module!r} (only pymatgen)")
        for value in obj.values():
            _check_modules(value, where)
    elif isinstance(obj, list):
        for value in obj:
            _check_modules(value, where)


def decode_entry(data: dict[str, Any], where: str = "entry") -> ComputedEntry:
    """A ``ComputedEntry`` / ``ComputedStructureEntry`` from its dict, importing nothing else.

    Raises
    ------
    ValueError
        The dict is not one of those two classes, or names a non-pymatgen ``@module``.
    """
    _check_modules(data, where)
    cls = _ENTRY_CLASSES.get(str(data.get("@class", "ComputedEntry")))
    if cls is None:
        raise ValueError(f"{where}: expected a ComputedEntry, got @class {data.get('@class')!r}")
    return cls.from_dict(data)


def decode_entries(text: str, where: str) -> list[ComputedEntry]:
    """Entries from the JSON text of an entries file (a list of entry dicts)."""
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError(f"{where}: an entries file holds a JSON list of entries")
    return [decode_entry(d, where) for d in data]


def _load_entries(path: Path) -> list[ComputedEntry]:
    return decode_entries(path.read_text(), str(path))


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
    elements: list[str], config: DftHullConfig, exclude_ids: set[str]
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
        for result in read_dft_results(path.expanduser()):
            if result.entry and result.calc_id not in exclude_ids:
                refs.append(decode_entry(result.entry, str(path)))
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
    if decomp is None or e_hull is None:
        raise ValueError(f"{entry.composition.reduced_formula} has no decomposition on the hull")
    parts = " + ".join(
        f"{amount:.3f} {e.composition.reduced_formula}"
        for e, amount in sorted(decomp.items(), key=lambda kv: -kv[1])
    )
    return float(e_hull), parts


def hull_results(
    candidates: list[DftResult],
    entries: dict[str, ComputedStructureEntry],
    config: DftHullConfig,
    check_potcar: dict[str, bool],
    rule: StabilityRule | None = None,
    competing: Mapping[str, list[ComputedEntry] | str] | None = None,
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
    rule
        The stable / metastable thresholds (shared with the MLIP hull).
    competing
        Per calculation id, its competing phases computed with the candidate's own settings
        (a hull of recomputed phases, :mod:`tasks.dft.recomputed_hull`), or why they could
        not all be computed (the candidate is then ``no_hull`` with that reason). When
        given, these are added to the configured reference sources (a CP2K stage configures
        none).
    """
    rule = rule or StabilityRule()
    exclude = set(entries)
    out = []
    for res in candidates:
        if res.dft_status != COMPLETED or res.calc_id not in entries:
            out.append(res)
            continue
        entry: ComputedEntry = entries[res.calc_id]
        if config.correct_candidates:
            check = check_potcar.get(res.calc_id, True)
            corrected, dropped = apply_mp2020([entry], check_potcar=check)
            if not corrected:
                res.dft_status, res.reason = INCOMPATIBLE, dropped.get(str(entry.entry_id), "")
                out.append(res)
                continue
            entry = corrected[0]
        elements = sorted(el.symbol for el in entry.composition.elements)
        refs = reference_entries(elements, config, exclude)
        if config.correct_references:
            refs, _ = apply_mp2020(refs)
        if competing is not None:
            given = competing.get(res.calc_id, "its competing phases were not computed")
            if isinstance(given, str):
                res.dft_status, res.reason = NO_HULL, given
                out.append(res)
                continue
            refs = [*given, *refs]
        res.corrected_energy_per_atom = entry.energy_per_atom
        res.entry = entry.as_dict()
        try:
            res.e_hull_dft, res.decomposition = e_above_hull(entry, refs)
        except ValueError as err:
            res.dft_status, res.reason = NO_HULL, f"references for {chemsys(elements)}: {err}"
            out.append(res)
            continue
        res.stable, res.metastable = rule.classify(res.e_hull_dft, res.n_elements)
        out.append(res)
    return out


def dft_counts(results: list[DftResult]) -> dict[str, Any]:
    """How the batch went: counts per status and the stable / metastable counts.

    ``n_checked`` counts the candidates the hull judged (completed, with an E_hull): the
    denominator of every DFT rate. Failed, incompatible and unplaced calculations are
    reported in ``n_failed``, never counted as "checked, not stable"; rejected inputs and
    calculations still running are only counted per status.
    """
    counts: dict[str, int] = {}
    for r in results:
        counts[r.dft_status] = counts.get(r.dft_status, 0) + 1
    checked = [r for r in results if r.dft_status == COMPLETED and r.e_hull_dft is not None]
    return {
        "status_counts": counts,
        "n_sent": sum(r.dft_status != REJECTED for r in results),
        "n_checked": len(checked),
        "n_failed": sum(counts.get(s, 0) for s in (FAILED, INCOMPATIBLE, NO_HULL)),
        "n_stable": sum(r.stable for r in checked),
        "n_metastable": sum(r.metastable for r in checked),
    }


def results_as_rows(results: list[DftResult]) -> list[dict[str, Any]]:
    """Plain dicts (JSON-ready)."""
    return [asdict(r) for r in results]


def collect_results(
    workdir: str | Path,
    config: DftHullConfig,
    rule: StabilityRule | None = None,
    competing: Mapping[str, list[ComputedEntry] | str] | None = None,
) -> list[DftResult]:
    """Gather every calculation of a work directory into DFT results with E_hull.

    Completed calculations are read from their results store (the newest job output of
    the last attempt, i.e. the static when one was run); failed, still running and rejected
    candidates are reported with their status and reason, and never block the others. CP2K
    calculations are placed only with their ``competing`` phases (:func:`hull_results`);
    without them they are ``no_hull``, never judged against the configured references.
    """
    workdir = Path(workdir).resolve()
    results: list[DftResult] = []
    entries: dict[str, ComputedStructureEntry] = {}
    check_potcar: dict[str, bool] = {}
    for st in calc_statuses(workdir):
        res = DftResult(
            id=st.candidate_id,
            calc_id=st.calc_id,
            formula=st.formula,
            dft_status=st.status,
            reason=st.reason,
            n_elements=len(Composition(st.formula).elements),
        )
        settings = read_calc(workdir, st.calc_id).settings if st.status == COMPLETED else {}
        if settings.get("code") == "cp2k" and competing is None:
            res.dft_status, res.reason = NO_HULL, CP2K_NEEDS_ITS_HULL
        elif st.status == COMPLETED:
            docs = load_outputs(workdir, st.calc_id, st.attempt)
            if docs:
                entry = entry_from_task_output(docs[0]["output"], entry_id=st.calc_id)
                res.energy_per_atom = entry.energy_per_atom
                entries[st.calc_id] = entry
                check_potcar[st.calc_id] = not settings.get("potcar_spec", False)
            else:
                res.dft_status, res.reason = FAILED, "completed but no output in the store"
        results.append(res)
    for cid, reason in read_rejected(workdir).items():
        results.append(
            DftResult(id=cid, calc_id="", formula="", dft_status=REJECTED, reason=reason)
        )
    return hull_results(results, entries, config, check_potcar, rule, competing)


def write_results(workdir: str | Path, results: list[DftResult], summary: dict[str, Any]) -> Path:
    """Write ``dft_results.json`` (with entries), ``dft_results.parquet`` and ``dft_summary.json``.

    Returns
    -------
    Path
        The JSON results file (usable as ``DftHullConfig.earlier_results`` of a later round).
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
