"""An MLIP-consistent convex hull: E_hull of relaxed candidates against the competing phases.

The reference phases are, by default, the papers' hull: every phase of MP-20 and MPTS-52
(``docs/evaluation.md``, step 6), as the reference energy table holds them
(:mod:`tasks.mlip.reference_table`; a CHGNet table ships with the repository). The training
set is the reference of *novelty*, never of stability. Energies come from the table when it
was built with the same MLIP (refused otherwise), else they are computed with the same MLIP
and settings as the candidates, lazily per chemical system, and cached on disk under
``<cache>/<MLIP name+version>/<settings hash>/<key>.json``.

Single-point references (the shipped table) sit higher on the MLIP's energy surface than
relaxed candidates, which biases candidates toward stability by the measured drop
(``benchmarks/results/reference_bias.md``); every summary says so.

Every hull row carries its evidence: how many reference phases its chemical system and all
sub-systems have, which elements or binary sub-systems have none, and flags for results a
referee would question (far below the known hull, an unconverged relaxation, an elemental
reference from an ASE prototype). A flagged candidate is never reported without its flags.

Elemental references for elements no reference phase covers: ASE's reference crystal
structure where ASE can build it, plus fcc / bcc / simple-cubic / diamond prototypes at a
covalent-radius lattice constant (and a dimer in a 10 Å box for diatomic gases); the phase
diagram keeps the lowest. Such a reference can lie above the element's true ground state,
which makes compounds of that element look too stable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, reference_states
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure

from tasks.core.atomic import write_json_atomic
from tasks.core.columns import Col
from tasks.core.config import content_dump
from tasks.core.mapping import Mapper
from tasks.core.paths import REPO_ROOT, resolve_data_path
from tasks.core.records import STATUS_FAILED, STATUS_OK, structure_hash, structure_to_json
from tasks.core.structure_io import Format, parse_payload, read_entries
from tasks.mlip.backends import load_mlip, safe_dirname
from tasks.mlip.documents import RELAX_META, RelaxMeta
from tasks.mlip.reference_table import (
    SHIPPED_TABLE,
    Method,
    ReferenceTable,
    check_table,
    load_table,
    reference_key,
    shipped_table,
)
from tasks.mlip.results import atoms_to_structure
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import MLIPHullConfig, ScreenSettings

log = logging.getLogger(__name__)

#: Failures that may not happen again on a rerun, so they are not cached.
_TRANSIENT = ("time budget", "worker failed")
#: Shortest covalent bond (Å) for which generic elemental lattice prototypes are built.
MIN_PROTOTYPE_BOND = 1.5


class HullError(RuntimeError):
    """The hull cannot be built as asked (inconsistent MLIP, unreadable reference set)."""


@dataclass(frozen=True)
class Reference:
    """One reference phase before its energy is known."""

    id: str
    elements: frozenset[str]
    key: str
    text: str
    fmt: Format

    def structure(self) -> Structure:
        """The reference structure as stored."""
        return parse_payload(self.text, self.fmt)


_SYMBOL = re.compile(r"[A-Z][a-z]?")


def _elements(formula: str) -> frozenset[str]:
    """The element symbols of a formula (``Al(CuS)2`` → Al, Cu, S).

    A symbol is a capital letter and an optional small one, so this reads the table's 48,442
    formulas in 0.1 s where parsing them as compositions took 3 s in every hull and DFT stage.
    """
    return frozenset(_SYMBOL.findall(formula))


def read_references(path: str | Path) -> list[Reference]:
    """Index a reference set without parsing its structures (when it has a formula column).

    Parameters
    ----------
    path
        Any structure set :func:`tasks.core.structure_io.read_entries` reads: a records
        parquet, an MP-20 / MPTS-52 CSV(.gz), a CIF folder. Unusable entries are skipped.

    Returns
    -------
    list of Reference
    """
    path = Path(path)
    if not path.exists():
        raise HullError(f"reference set {path} not found")
    try:
        entries = read_entries(path)
    except ValueError as err:
        raise HullError(f"reference set: {err}") from None
    out = []
    for entry in entries:
        if entry.reason:
            continue
        formula = entry.formula
        if not formula:
            structure, _ = entry.parse()
            if structure is None:
                continue
            formula = structure.composition.reduced_formula
        out.append(
            Reference(
                entry.id, _elements(formula), reference_key(entry.payload), entry.payload, entry.fmt
            )
        )
    return out


@dataclass
class HullReferences:
    """The competing phases of a hull, with the energies already known for some of them.

    Attributes
    ----------
    references
        Every reference phase (without elemental prototypes).
    known
        Energy entries by reference key, from a reference table.
    method
        How references are computed: single points at the given geometries, or relaxed.
    description
        What the references and their energies are, for summaries and reports.
    """

    references: list[Reference]
    known: dict[str, dict[str, Any]] = field(default_factory=dict)
    method: Method = "single_point"
    description: str = ""


def table_references(table: ReferenceTable) -> list[Reference]:
    """The phases of a reference table as hull references (compact structures, table keys)."""
    frame = table.frame
    return [
        Reference(i, _elements(f), k, c, "compact")
        for i, f, k, c in zip(
            frame["id"], frame["formula"], frame["key"], frame["crystal"], strict=True
        )
    ]


def table_energies(table: ReferenceTable) -> dict[str, dict[str, Any]]:
    """Energy entries (as the hull caches them) of a table's ``ok`` phases, by key."""
    ok = table.frame[table.frame["status"] == STATUS_OK]
    return {
        str(k): {
            "id": str(i),
            "formula": str(f),
            "n_atoms": int(n),
            "energy": float(e) * int(n),
            "status": STATUS_OK,
            "reason": "",
            "mlip_version": table.meta.mlip_version,
        }
        for i, k, f, n, e in zip(
            ok["id"], ok["key"], ok["formula"], ok["n_atoms"], ok["energy_per_atom"], strict=True
        )
    }


def reference_sources(config: MLIPHullConfig) -> list[Path]:
    """The structure sets holding a hull's reference phases (the table, or the datasets)."""
    if config.reference is None:
        return [Path(config.table) if config.table else SHIPPED_TABLE]
    return [resolve_data_path(p) for p in config.reference]


def hull_references(
    config: MLIPHullConfig, mlip_version: str, extra: Sequence[str | Path] = ()
) -> HullReferences:
    """The reference phases a hull of ``config`` uses, plus ``extra`` sets (discoveries).

    Raises
    ------
    HullError
        A dataset is missing, or the table is missing (for the default references).
    tasks.mlip.reference_table.TableMismatchError
        ``energies: table`` with a table of another MLIP.
    """
    shipped = shipped_table(mlip_version)
    energies = config.energies
    if energies == "auto":
        energies = "table" if config.table or shipped else "single_point"
    table_path = Path(config.table) if config.table else (shipped or SHIPPED_TABLE)
    table = None
    if energies == "table" or config.reference is None:
        try:
            table = load_table(table_path)
        except FileNotFoundError as err:
            raise HullError(str(err)) from None
    if config.reference is None:
        assert table is not None
        refs = table_references(table)
        source = f"every MP-20 / MPTS-52 phase of {table.path.name}"
    else:
        refs = [r for path in config.reference for r in read_references(resolve_data_path(path))]
        source = ", ".join(config.reference)
    for path in extra:
        refs += read_references(path)
    known: dict[str, dict[str, Any]] = {}
    method: Method = "relaxed" if energies == "relaxed" else "single_point"
    if energies == "table":
        assert table is not None
        check_table(table.meta, mlip_version, table.path)
        known = table_energies(table)
        method = table.meta.method
        how = table.meta.describe()
    else:
        how = f"{mlip_version} {method.replace('_', ' ')} energies computed for this hull"
    extra_text = f" plus {', '.join(str(p) for p in extra)}" if extra else ""
    return HullReferences(refs, known, method, f"{source}{extra_text}; {how}")


def elemental_prototypes(symbol: str) -> list[Structure]:
    """Candidate elemental reference structures for ``symbol`` (see the module docstring)."""
    d = 2 * covalent_radii[atomic_numbers[symbol]]
    builders = [lambda: bulk(symbol)]
    if d >= MIN_PROTOTYPE_BOND:  # not for H, He, N, O, F: only their ASE state / a dimer
        builders += [
            lambda: bulk(symbol, "fcc", a=d * math.sqrt(2)),
            lambda: bulk(symbol, "bcc", a=2 * d / math.sqrt(3)),
            lambda: bulk(symbol, "sc", a=d),
            lambda: bulk(symbol, "diamond", a=4 * d / math.sqrt(3)),
        ]
    state = reference_states[atomic_numbers[symbol]] or {}
    if state.get("symmetry") == "diatom":
        bond = float(cast(float, state["d"]))
        builders.append(
            lambda: Atoms(
                2 * symbol, positions=[(5, 5, 5), (5, 5, 5 + bond)], cell=[10] * 3, pbc=True
            )
        )
    out = []
    for build in builders:
        try:
            out.append(atoms_to_structure(build()))
        except Exception as err:  # ASE has no reference data for this element/lattice
            log.debug("no %s prototype: %s", symbol, err)
    return out


@cache
def _prototype_references(symbol: str) -> tuple[Reference, ...]:
    return tuple(
        Reference(
            f"ase:{symbol}-{k}",
            frozenset([symbol]),
            structure_hash(s),
            structure_to_json(s),
            "json",
        )
        for k, s in enumerate(elemental_prototypes(symbol))
    )


class MLIPHull:
    """Reference energies and phase diagrams for one MLIP, computed lazily and cached.

    Parameters
    ----------
    references
        The competing phases and how their energies are obtained (:func:`hull_references`
        builds them from a :class:`MLIPHullConfig`); the one source of truth for whether
        references are single points or relaxed.
    screen
        The MLIP and relaxation settings (those the candidates were relaxed with;
        single-point references use ``relax`` with no steps), the hull settings and the
        stable / metastable rule (shared with the DFT hull).
    mapper
        Where the reference relaxations' chunks run (default: ``relax.scheduler``).
    """

    def __init__(
        self,
        references: HullReferences,
        screen: ScreenSettings | None = None,
        mapper: Mapper | None = None,
    ) -> None:
        screen = screen or ScreenSettings()
        self.reference_set = references
        self.references = references.references
        self.rule = screen.stability
        self.mapper = mapper
        self.mlip = screen.mlip
        self.config = screen.hull
        relax = screen.relax
        single = references.method == "single_point"
        self.relax = relax.model_copy(update={"steps": 0}) if single else relax
        self.backend = load_mlip(self.mlip)
        self.settings_hash = hashlib.sha256(
            json.dumps(content_dump(self.relax), sort_keys=True).encode()
        ).hexdigest()[:12]
        root = self.config.cache_dir or REPO_ROOT / "data" / "cache" / "mlip_hull"
        self.cache_dir = (
            root / safe_dirname(f"{self.backend.name}-{self.backend.version}") / self.settings_hash
        )
        self.energies: dict[str, dict[str, Any]] = dict(references.known)  # key -> entry
        self.stats = {"table": len(references.known), "cached": 0, "computed": 0, "failed": 0}
        self._diagrams: dict[frozenset[str], PhaseDiagram | str] = {}
        self._systems = Counter(r.elements for r in self.references)
        self._elemental = {el for s in self._systems if len(s) == 1 for el in s}

    def coverage(self, elements: frozenset[str]) -> tuple[int, list[str]]:
        """Reference phases of a chemical system and all its sub-systems, and the gaps.

        Returns
        -------
        n_phases, gaps
            The number of reference phases whose elements lie within ``elements`` (ASE
            prototypes not counted), and every element and binary sub-system with none.
        """
        n_phases = sum(n for system, n in self._systems.items() if system <= elements)
        ordered = sorted(elements)
        gaps = [el for el in ordered if frozenset([el]) not in self._systems]
        gaps += [
            f"{a}-{b}"
            for a, b in itertools.combinations(ordered, 2)
            if frozenset((a, b)) not in self._systems
        ]
        return n_phases, gaps

    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _needed(self, systems: Iterable[frozenset[str]]) -> list[Reference]:
        systems = set(systems)
        needed = [r for r in self.references if any(r.elements <= s for s in systems)]
        if self.config.elemental_prototypes:
            missing = sorted(set().union(*systems) - self._elemental) if systems else []
            for symbol in missing:
                needed.extend(_prototype_references(symbol))
        return needed

    def prepare(self, systems: Iterable[frozenset[str]]) -> None:
        """Make sure every reference of these chemical systems (and sub-systems) has an energy.

        Cached energies are read from disk; the rest are relaxed (or single-pointed) with the
        MLIP in one batch and written to the cache.
        """
        todo: list[Reference] = []
        for ref in self._needed(systems):
            if ref.key in self.energies:
                continue
            path = self._cache_path(ref.key)
            if path.is_file():
                self.energies[ref.key] = {**json.loads(path.read_text()), "id": ref.id}
                self.stats["cached"] += 1
            else:
                todo.append(ref)
        todo = list({r.key: r for r in todo}.values())
        if not todo:
            return
        log.info("computing %d reference energies with %s", len(todo), self.backend.version)
        items, unreadable = [], []
        for ref in todo:
            try:
                items.append((ref.key, structure_to_json(ref.structure())))
            except Exception as err:
                unreadable.append(ref)
                log.warning("reference %s unreadable: %s", ref.id, err)
        results = relax_items(items, self.mlip, self.relax, mapper=self.mapper).set_index("id")
        by_key = {r.key: r for r in todo}
        for key, row in results.iterrows():
            entry = {
                "id": by_key[key].id,
                "formula": row["formula"],
                "n_atoms": int(row["n_atoms"]),
                "energy": float(row["energy"]),
                "status": row["status"],
                "reason": row["reason"],
                "steps": int(row["steps"]),
                "converged": bool(row["converged"]),
                "mlip_version": self.backend.version,
            }
            self.energies[str(key)] = entry
            self.stats["computed"] += 1
            self.stats["failed"] += row["status"] != STATUS_OK
            if not str(row["reason"]).startswith(_TRANSIENT):
                write_json_atomic(self._cache_path(str(key)), entry)
        for ref in unreadable:
            self.energies[ref.key] = {"id": ref.id, "status": STATUS_FAILED, "reason": "unreadable"}

    def phases(self, elements: frozenset[str]) -> dict[str, Reference]:
        """The reference phases of a chemical system and its sub-systems, by id (elemental
        prototypes included where they stand in)."""
        return {ref.id: ref for ref in self._needed([elements])}

    def entries(self, elements: frozenset[str]) -> list[PDEntry]:
        """Phase-diagram entries of the references within ``elements`` (after :meth:`prepare`)."""
        out = []
        for ref in self._needed([elements]):
            entry = self.energies.get(ref.key)
            if entry and entry["status"] == STATUS_OK and np.isfinite(entry["energy"]):
                out.append(PDEntry(_composition(entry), entry["energy"], name=ref.id))
        return out

    def phase_diagram(self, elements: frozenset[str]) -> PhaseDiagram:
        """The :class:`PhaseDiagram` of a chemical system (memoised)."""
        if elements not in self._diagrams:
            self.prepare([elements])
            entries = self.entries(elements)
            have = {
                el.symbol
                for e in entries
                if len(e.composition.elements) == 1
                for el in e.composition.elements
            }
            lacking = sorted(elements - have)
            if lacking:
                self._diagrams[elements] = f"no elemental reference for {', '.join(lacking)}"
            else:
                self._diagrams[elements] = PhaseDiagram(entries)
        diagram = self._diagrams[elements]
        if isinstance(diagram, str):
            raise HullError(diagram)
        return diagram

    def evaluate(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """E_hull, formation energy and stability flags of relaxed candidates.

        Parameters
        ----------
        candidates
            Rows of :func:`tasks.mlip.runner.run_relax` output (``id``, ``structure``,
            ``energy``, ``status``, ``mlip_version``, ``single_point``...).

        Returns
        -------
        pandas.DataFrame
            One row per candidate: ``id, formula, chemsys, n_elements, energy_per_atom,
            e_form_per_atom, e_hull, stable, metastable, decomposition, hull_status,
            hull_reason, mlip, mlip_version, candidate_single_point,
            reference_single_point, n_reference_phases, coverage_gaps, flags, flagged``.
        """
        ok = candidates[candidates["status"] == STATUS_OK]
        versions = set(ok["mlip_version"]) - {self.backend.version}
        if versions:
            raise HullError(
                f"candidates were relaxed with {sorted(versions)} but the hull uses "
                f"{self.backend.version}: energies of different MLIPs cannot share a hull"
            )
        systems = {_elements(f) for f in ok["formula"]}
        self.prepare(systems)
        return pd.DataFrame([self._row(row) for row in candidates.to_dict(orient="records")])

    def _row(self, row: dict) -> dict:
        formula = row.get(Col.FORMULA) or ""
        elements = _elements(formula) if formula else frozenset()
        out = {
            Col.ID: row[Col.ID],
            Col.FORMULA: formula,
            Col.CHEMSYS: "-".join(sorted(elements)),
            Col.N_ELEMENTS: len(elements),
            Col.ENERGY_PER_ATOM: row.get(Col.ENERGY_PER_ATOM, math.nan),
            Col.E_FORM_PER_ATOM: math.nan,
            Col.E_HULL: math.nan,
            Col.STABLE: False,
            Col.METASTABLE: False,
            Col.DECOMPOSITION: "",
            Col.HULL_STATUS: STATUS_OK,
            Col.HULL_REASON: "",
            Col.MLIP: self.backend.name,
            Col.MLIP_VERSION: self.backend.version,
            Col.CANDIDATE_SINGLE_POINT: bool(row.get(Col.SINGLE_POINT, False)),
            Col.REFERENCE_SINGLE_POINT: self.relax.single_point,
            Col.N_REFERENCE_PHASES: 0,
            Col.COVERAGE_GAPS: "",
            Col.FLAGS: "",
            Col.FLAGGED: False,
        }
        n_phases, gaps = self.coverage(elements) if elements else (0, [])
        out[Col.N_REFERENCE_PHASES], out[Col.COVERAGE_GAPS] = n_phases, ", ".join(gaps)
        flags = []
        if gaps:
            lacking = [g for g in gaps if "-" not in g]
            stand_in = f" (an ASE prototype stands in for {', '.join(lacking)})" if lacking else ""
            flags.append(f"no reference phase for {', '.join(gaps)}{stand_in}")
        if not out[Col.CANDIDATE_SINGLE_POINT] and not bool(row.get(Col.CONVERGED, True)):
            flags.append("relaxation did not converge")
        out[Col.FLAGS], out[Col.FLAGGED] = "; ".join(flags), bool(flags)
        if row[Col.STATUS] != STATUS_OK or not np.isfinite(row.get(Col.ENERGY, math.nan)):
            out[Col.HULL_STATUS] = STATUS_FAILED
            out[Col.HULL_REASON] = f"relaxation {row['status']}: {row.get('reason', '')}"
            return out
        try:
            diagram = self.phase_diagram(elements)
            entry = PDEntry(_composition(row), float(row[Col.ENERGY]), name=str(row[Col.ID]))
            decomposition, e_hull = diagram.get_decomp_and_e_above_hull(
                entry, allow_negative=True, check_stable=False
            )
        except Exception as err:
            out[Col.HULL_STATUS], out[Col.HULL_REASON] = STATUS_FAILED, str(err)
            return out
        if e_hull is None or decomposition is None:
            out[Col.HULL_STATUS], out[Col.HULL_REASON] = (
                STATUS_FAILED,
                "no decomposition on the hull",
            )
            return out
        out[Col.E_HULL] = float(e_hull)
        if e_hull < -self.config.far_below:
            flags.append(
                f"far below the known hull (E_hull < -{self.config.far_below} eV/atom): "
                "check the reference and the relaxation"
            )
            out[Col.FLAGS], out[Col.FLAGGED] = "; ".join(flags), True
        out[Col.E_FORM_PER_ATOM] = float(diagram.get_form_energy_per_atom(entry))
        out[Col.STABLE], out[Col.METASTABLE] = self.rule.classify(float(e_hull), len(elements))
        out[Col.DECOMPOSITION] = " + ".join(
            f"{amount:.3f} {e.composition.reduced_formula} ({getattr(e, 'name', '')})"
            for e, amount in sorted(decomposition.items(), key=lambda kv: -kv[1])
        )
        return out


def _composition(row: dict) -> Composition:
    """The cell composition from a reduced formula and an atom count."""
    reduced = Composition(row["formula"])
    return reduced * (int(row["n_atoms"]) / reduced.num_atoms)


def read_relaxed(path: str | Path) -> tuple[pd.DataFrame, RelaxMeta | None]:
    """Relaxed candidates and their run's metadata (``None`` for a bare table) from a
    ``run_relax`` directory or parquet."""
    path = Path(path)
    table = path / "relaxed.parquet" if path.is_dir() else path
    if not table.is_file():
        raise HullError(f"no relaxed candidates at {table}")
    meta_path = table.parent / RELAX_META
    return pd.read_parquet(table), RelaxMeta.read(meta_path) if meta_path.is_file() else None


def recorded_screen(meta: RelaxMeta | None) -> ScreenSettings:
    """The screen settings of a relaxation's document: its MLIP and relaxation, default hull
    and stability rule (all defaults for a bare table without a document)."""
    if meta is None:
        return ScreenSettings()
    return ScreenSettings(mlip=meta.mlip, relax=meta.relax)
