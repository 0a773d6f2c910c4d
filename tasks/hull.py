"""An MLIP-consistent convex hull: E_hull of relaxed candidates against MLIP-relaxed references.

Reference phases are the training dataset's structures plus elemental prototypes for
elements the dataset lacks as pure phases, all relaxed with the *same* MLIP and the same
:class:`tasks.relax.RelaxConfig` physics settings as the candidates (the LeMat-GenBench
practice), so the hull is self-consistent per MLIP. References are computed lazily, only
for the chemical systems the candidates need (with all their sub-systems), and cached on
disk under ``<cache>/<MLIP name+version>/<settings hash>/<key>.json`` where ``key`` is the
record's ``content_hash`` (:func:`tasks.records.structure_hash`) when the dataset has one,
else the sha256 of the stored structure text. A second run (or the next night) reuses them.

With ``single_point_references`` the references are not relaxed (faster, but they sit
higher on the energy surface than relaxed candidates, which biases candidates toward
stability); every output row and the summary say when this was used.

Elemental references for missing elements: ASE's reference crystal structure where ASE
can build it, plus fcc / bcc / simple-cubic / diamond prototypes at a covalent-radius
lattice constant (and a dimer in a 10 Å box for diatomic gases); the phase diagram keeps
the lowest. Such a reference can lie above the element's true ground state, which makes
compounds of that element look too stable: prefer a reference set with elemental phases.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, covalent_radii, reference_states
from pydantic import Field
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure

from tasks.atomic import atomic_write, write_json_atomic
from tasks.config import StrictModel
from tasks.mapping import Mapper
from tasks.mlip import MLIPConfig, load_mlip, safe_dirname
from tasks.paths import REPO_ROOT
from tasks.records import STATUS_FAILED, STATUS_OK, structure_hash, structure_to_json
from tasks.relax import RelaxConfig, atoms_to_structure, relax_items

log = logging.getLogger(__name__)

#: Relaxation settings that change a reference's energy (the others only change scheduling).
PHYSICS_FIELDS = (
    "fmax",
    "steps",
    "fix_symmetry",
    "symprec",
    "min_volume_ratio",
    "max_volume_ratio",
    "min_distance",
)
#: Failures that may not happen again on a rerun, so they are not cached.
_TRANSIENT = ("time budget", "worker failed")
#: Shortest covalent bond (Å) for which generic elemental lattice prototypes are built.
MIN_PROTOTYPE_BOND = 1.5
#: Numerical slack on the stability thresholds (eV/atom).
HULL_TOLERANCE = 1e-6


class HullError(RuntimeError):
    """The hull cannot be built as asked (inconsistent MLIP, unreadable reference set)."""


class HullConfig(StrictModel):
    """Settings of the MLIP hull.

    Attributes
    ----------
    stable_threshold, metastable_threshold
        E_hull limits (eV/atom, inclusive) for the ``stable`` / ``metastable`` flags, which
        also need at least two elements.
    single_point_references
        Evaluate references without relaxing them (flagged in every output row).
    elemental_prototypes
        Add ASE elemental references for elements the reference set lacks as pure phases.
    cache_dir
        Reference-energy cache (default ``<repo>/data/cache/mlip_hull``).
    """

    stable_threshold: float = 0.0
    metastable_threshold: float = Field(default=0.1, ge=0)
    single_point_references: bool = False
    elemental_prototypes: bool = True
    cache_dir: Path | None = None


@dataclass(frozen=True)
class Reference:
    """One reference phase before its energy is known."""

    id: str
    elements: frozenset[str]
    key: str
    text: str
    fmt: str  # "cif" or "json"

    def structure(self) -> Structure:
        """The reference structure as stored."""
        if self.fmt == "json":
            return Structure.from_dict(json.loads(self.text))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Structure.from_str(self.text, fmt="cif")


def _elements(formula: str) -> frozenset[str]:
    return frozenset(el.symbol for el in Composition(formula).elements)


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_references(path: str | Path) -> list[Reference]:
    """Index a reference set without parsing its structures.

    Parameters
    ----------
    path
        A processed dataset parquet (``id``, ``formula``, ``structure``, optional
        ``status`` and ``content_hash``) or a CSV(.gz) with ``cif`` and
        ``pretty_formula`` (MP-20 / MPTS-52 layout).

    Returns
    -------
    list of Reference
    """
    path = Path(path)
    if not path.exists():
        raise HullError(f"reference set {path} not found")
    if path.name.endswith(".parquet"):
        frame = pd.read_parquet(path)
        if "status" in frame:
            frame = frame[frame["status"] == STATUS_OK]
        hashes = frame["content_hash"] if "content_hash" in frame else [""] * len(frame)
        return [
            Reference(str(i), _elements(f), h or _text_key(s), s, "json")
            for i, f, s, h in zip(
                frame["id"], frame["formula"], frame["structure"], hashes, strict=True
            )
        ]
    if path.name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(path)
        missing = {"material_id", "pretty_formula", "cif"} - set(frame.columns)
        if missing:
            raise HullError(f"{path}: reference CSV lacks columns {sorted(missing)}")
        return [
            Reference(str(i), _elements(f), _text_key(c), c, "cif")
            for i, f, c in zip(
                frame["material_id"], frame["pretty_formula"], frame["cif"], strict=True
            )
        ]
    raise HullError(f"{path}: unsupported reference set (use a records .parquet or a .csv.gz)")


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
        bond = state["d"]
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
        The reference set (see :func:`read_references`).
    mlip, relax
        MLIP and relaxation settings; they must be those the candidates were relaxed with.
    config
        Hull settings.
    mapper
        Where the reference relaxations' chunks run (default: ``relax.scheduler``).
    """

    def __init__(
        self,
        references: list[Reference],
        mlip: MLIPConfig | None = None,
        relax: RelaxConfig | None = None,
        config: HullConfig | None = None,
        mapper: Mapper | None = None,
    ) -> None:
        self.references = references
        self.mapper = mapper
        self.mlip = mlip or MLIPConfig()
        self.config = config or HullConfig()
        relax = relax or RelaxConfig()
        self.relax = (
            relax.model_copy(update={"steps": 0}) if self.config.single_point_references else relax
        )
        self.backend = load_mlip(self.mlip)
        settings = {k: getattr(self.relax, k) for k in PHYSICS_FIELDS}
        self.settings_hash = hashlib.sha256(
            json.dumps(settings, sort_keys=True).encode()
        ).hexdigest()[:12]
        root = self.config.cache_dir or REPO_ROOT / "data" / "cache" / "mlip_hull"
        self.cache_dir = (
            root / safe_dirname(f"{self.backend.name}-{self.backend.version}") / self.settings_hash
        )
        self.energies: dict[str, dict] = {}  # reference key -> cache entry
        self.stats = {"cached": 0, "computed": 0, "failed": 0}
        self._diagrams: dict[frozenset[str], PhaseDiagram | str] = {}
        self._elemental = {el for r in references if len(r.elements) == 1 for el in r.elements}

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
            Rows of :func:`tasks.relax.run_relax` output (``id``, ``structure``,
            ``energy``, ``status``, ``mlip_version``, ``single_point``...).

        Returns
        -------
        pandas.DataFrame
            One row per candidate: ``id, formula, chemsys, n_elements, energy_per_atom,
            e_form_per_atom, e_hull, stable, metastable, decomposition, hull_status,
            hull_reason, mlip, mlip_version, candidate_single_point,
            reference_single_point``.
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
        formula = row.get("formula") or ""
        elements = _elements(formula) if formula else frozenset()
        out = {
            "id": row["id"],
            "formula": formula,
            "chemsys": "-".join(sorted(elements)),
            "n_elements": len(elements),
            "energy_per_atom": row.get("energy_per_atom", math.nan),
            "e_form_per_atom": math.nan,
            "e_hull": math.nan,
            "stable": False,
            "metastable": False,
            "decomposition": "",
            "hull_status": STATUS_OK,
            "hull_reason": "",
            "mlip": self.backend.name,
            "mlip_version": self.backend.version,
            "candidate_single_point": bool(row.get("single_point", False)),
            "reference_single_point": self.relax.single_point,
        }
        if row["status"] != STATUS_OK or not np.isfinite(row.get("energy", math.nan)):
            out["hull_status"] = STATUS_FAILED
            out["hull_reason"] = f"relaxation {row['status']}: {row.get('reason', '')}"
            return out
        try:
            diagram = self.phase_diagram(elements)
            entry = PDEntry(_composition(row), float(row["energy"]), name=str(row["id"]))
            decomposition, e_hull = diagram.get_decomp_and_e_above_hull(
                entry, allow_negative=True, check_stable=False
            )
        except Exception as err:
            out["hull_status"], out["hull_reason"] = STATUS_FAILED, str(err)
            return out
        multi = len(elements) >= 2
        out["e_hull"] = float(e_hull)
        out["e_form_per_atom"] = float(diagram.get_form_energy_per_atom(entry))
        out["stable"] = multi and e_hull <= self.config.stable_threshold + HULL_TOLERANCE
        out["metastable"] = multi and e_hull <= self.config.metastable_threshold + HULL_TOLERANCE
        out["decomposition"] = " + ".join(
            f"{amount:.3f} {e.composition.reduced_formula} ({e.name})"
            for e, amount in sorted(decomposition.items(), key=lambda kv: -kv[1])
        )
        return out


def _composition(row: dict) -> Composition:
    """The cell composition from a reduced formula and an atom count."""
    reduced = Composition(row["formula"])
    return reduced * (int(row["n_atoms"]) / reduced.num_atoms)


def read_relaxed(path: str | Path) -> tuple[pd.DataFrame, dict]:
    """Relaxed candidates and their run metadata from a ``run_relax`` directory or parquet."""
    path = Path(path)
    table = path / "relaxed.parquet" if path.is_dir() else path
    if not table.is_file():
        raise HullError(f"no relaxed candidates at {table}")
    meta_path = table.parent / "relax_meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return pd.read_parquet(table), meta


def run_hull(
    relaxed: str | Path,
    reference: str | Path,
    out_dir: str | Path,
    mlip: MLIPConfig | None = None,
    relax: RelaxConfig | None = None,
    config: HullConfig | None = None,
    mapper: Mapper | None = None,
) -> Path:
    """Place relaxed candidates on the MLIP hull of a reference set; write the results.

    MLIP and relaxation settings default to those recorded in ``relax_meta.json`` next to
    the relaxed candidates, so references are treated exactly like the candidates.

    Parameters
    ----------
    relaxed
        A :func:`tasks.relax.run_relax` output directory or its ``relaxed.parquet``.
    reference
        The reference set (see :func:`read_references`).
    out_dir
        Writes ``hull.parquet`` (see :meth:`MLIPHull.evaluate`) and ``hull_summary.json``.
    mlip, relax, config
        Overrides of the recorded MLIP / relaxation settings, and hull settings.
    mapper
        Where the reference relaxations' chunks run (default: ``relax.scheduler``).

    Returns
    -------
    Path
        The ``hull.parquet`` path.
    """
    candidates, meta = read_relaxed(relaxed)
    if mlip is None:
        mlip = MLIPConfig.model_validate(meta["mlip"]) if "mlip" in meta else MLIPConfig()
    if relax is None:
        relax = RelaxConfig.model_validate(meta["relax"]) if "relax" in meta else RelaxConfig()
    config = config or HullConfig()
    start = time.perf_counter()
    hull = MLIPHull(read_references(reference), mlip, relax, config, mapper)
    frame = hull.evaluate(candidates)
    out = Path(out_dir)
    path = atomic_write(out / "hull.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    ok = frame["hull_status"] == STATUS_OK
    summary = {
        "mlip_version": hull.backend.version,
        "reference": str(reference),
        "reference_single_point": hull.relax.single_point,
        "candidate_single_point": bool(frame["candidate_single_point"].any()),
        "n_candidates": len(frame),
        "n_on_hull": int(ok.sum()),
        "n_stable": int(frame["stable"].sum()),
        "n_metastable": int(frame["metastable"].sum()),
        "references": hull.stats,
        "cache_dir": str(hull.cache_dir),
        "relax": hull.relax.model_dump(mode="json"),
        "config": config.model_dump(mode="json"),
        "wall_s": time.perf_counter() - start,
    }
    if hull.relax.single_point:
        summary["warning"] = (
            "references were single points (not relaxed): E_hull is biased toward stability"
        )
    write_json_atomic(out / "hull_summary.json", summary)
    return path


def ensemble_summary(results: dict[str, pd.DataFrame], min_agree: int = 2) -> pd.DataFrame:
    """Combine per-MLIP hull results (each against its own hull) into an ensemble verdict.

    Parameters
    ----------
    results
        MLIP label -> :meth:`MLIPHull.evaluate` output for the same candidates.
    min_agree
        How many MLIPs must call a candidate stable (metastable) for the ensemble flag
        (LeMat-GenBench uses 2 of MACE, ORB and UMA).

    Returns
    -------
    pandas.DataFrame
        Per ``id``: ``e_hull_<label>`` per MLIP, ``e_hull_mean``, ``e_hull_std`` (over the
        MLIPs that placed it), ``n_mlips``, ``stable_votes``, ``metastable_votes``,
        ``stable`` and ``metastable`` (votes >= ``min_agree``).
    """
    if min_agree < 1 or min_agree > len(results):
        raise ValueError(f"min_agree={min_agree} must be between 1 and {len(results)} MLIPs")
    columns = {}
    stable, metastable = [], []
    for label, frame in results.items():
        indexed = frame.set_index("id")
        placed = indexed["hull_status"] == STATUS_OK
        columns[f"e_hull_{label}"] = indexed["e_hull"].where(placed)
        stable.append(indexed["stable"].astype(bool) & placed)
        metastable.append(indexed["metastable"].astype(bool) & placed)
    out = pd.DataFrame(columns)
    values = out.to_numpy(dtype=float)
    out["e_hull_mean"] = np.nanmean(values, axis=1) if values.size else []
    out["e_hull_std"] = np.nanstd(values, axis=1) if values.size else []
    out["n_mlips"] = np.isfinite(values).sum(axis=1)
    out["stable_votes"] = pd.concat(stable, axis=1).fillna(False).sum(axis=1)
    out["metastable_votes"] = pd.concat(metastable, axis=1).fillna(False).sum(axis=1)
    out["stable"] = out["stable_votes"] >= min_agree
    out["metastable"] = out["metastable_votes"] >= min_agree
    return out.reset_index()
