"""The de novo evaluation: validity, the S.U.N. funnel up to the DFT draw, and symmetry metrics.

Funnel (``docs/evaluation.md``, seeded): structurally valid → unique among the valid
(group representatives) → draw ``novelty_draw`` (1,000) of the valid and unique → novel
against the reference set → draw ``dft_draw`` (100) of those for DFT. Compositional
validity is reported, never used as a filter. Symmetry/distribution metrics use the
structurally valid crystals.

Every number is traceable: the verdict table has one row per input entry with the
validity reasons, space group, unique group, draw membership, novelty and the matched
reference id. Each stage is a plain function; its chunks run wherever a
:data:`tasks.core.mapping.Mapper` sends them (local processes, or Dask tasks in the Prefect flow).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from tasks.core.atomic import atomic_write, write_text_atomic
from tasks.core.mapping import Mapper, resolve_mapper
from tasks.core.paths import REPO_ROOT
from tasks.core.structure_io import ReadResult, dataset_fingerprint, read_structures
from tasks.evaluate.distributions import SymmetryInfo, distribution_metrics, symmetry_info
from tasks.evaluate.known import known_matches
from tasks.evaluate.matching import (
    ReferenceIndex,
    index_cache_path,
    load_or_build_index,
    novelty_matches,
    unique_groups,
)
from tasks.evaluate.metrics import EvaluationMetrics, ReferenceInfo, paper_row
from tasks.evaluate.settings import EvaluateConfig, ValidityConfig
from tasks.evaluate.validity import ValidityVerdict, check_validity

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = REPO_ROOT / "data" / "cache" / "evaluation"
CHUNK = 64


@dataclass
class EvaluationResult:
    """Metrics and the per-structure verdict table."""

    metrics: EvaluationMetrics
    verdicts: pd.DataFrame


def _chunks(items: Sequence, size: int = CHUNK) -> list[list]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _validity_chunk(args: tuple[list[Structure | None], ValidityConfig]) -> list[ValidityVerdict]:
    structures, config = args
    return [check_validity(s, config) for s in structures]


def _symmetry_chunk(args: tuple[list[Structure], float, float]) -> list[SymmetryInfo]:
    structures, symprec, angle_tolerance = args
    return [symmetry_info(s, symprec, angle_tolerance) for s in structures]


def run_validity(
    structures: Sequence[Structure | None], config: EvaluateConfig, mapper: Mapper | None = None
) -> list[ValidityVerdict]:
    """Structural and compositional validity of every entry (``None`` = unreadable)."""
    jobs = [(c, config.validity) for c in _chunks(structures)]
    parts = resolve_mapper(mapper, config.workers)(_validity_chunk, jobs)
    return [v for part in parts for v in part]


def run_symmetry(
    structures: Sequence[Structure], config: EvaluateConfig, mapper: Mapper | None = None
) -> list[SymmetryInfo]:
    """Symmetry summaries (space group, Wyckoff letters, counts) of every structure."""
    jobs = [(c, config.symprec, config.angle_tolerance) for c in _chunks(structures)]
    parts = resolve_mapper(mapper, config.workers)(_symmetry_chunk, jobs)
    return [v for part in parts for v in part]


@dataclass
class Reference:
    """A reference (training) set as evaluation needs it, built lazily and cached.

    ``extra`` datasets join the reference (the crystals a loop confirmed, one file per
    round). Each part's matching index and symmetry summaries are built once and cached by
    the part's content, so a reference that grows by a few crystals reduces only those.
    ``mapper`` runs the one-off work of a new part (reduction for the matching index,
    symmetry summaries); default: ``config.workers`` local processes.
    """

    path: Path
    config: EvaluateConfig
    mapper: Mapper | None = None
    extra: tuple[Path, ...] = ()

    @property
    def parts(self) -> tuple[Path, ...]:
        """The datasets of the reference, in order: ``path``, then ``extra``."""
        return (Path(self.path), *(Path(p) for p in self.extra))

    @cached_property
    def part_fingerprints(self) -> list[str]:
        """Content hash of each part."""
        return [dataset_fingerprint(p) for p in self.parts]

    @property
    def fingerprint(self) -> str:
        """Content hash of the reference (of its one dataset, or of its parts in order)."""
        prints = self.part_fingerprints
        if len(prints) == 1:
            return prints[0]
        return hashlib.sha256("+".join(prints).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        """The reference's datasets as reports name them (``a.parquet + b.parquet``)."""
        return " + ".join(str(p) for p in self.parts)

    @property
    def cache_dir(self) -> Path:
        """Folder of this run's reference caches."""
        return Path(self.config.cache_dir or DEFAULT_CACHE_DIR)

    def index(self) -> ReferenceIndex:
        """The matching index: each part's persisted index (built on first use), united."""
        indexes = [
            self._part_index(path, fingerprint)
            for path, fingerprint in zip(self.parts, self.part_fingerprints, strict=True)
        ]
        return indexes[0] if len(indexes) == 1 else ReferenceIndex.union(indexes, self.fingerprint)

    def symmetry(self) -> list[SymmetryInfo]:
        """Symmetry summaries of the reference set, part by part (persisted on first use)."""
        return [
            info
            for path, fingerprint in zip(self.parts, self.part_fingerprints, strict=True)
            for info in self._part_symmetry(path, fingerprint)
        ]

    def _part_index(self, path: Path, fingerprint: str) -> ReferenceIndex:
        cfg = self.config.matcher_config()
        if index_cache_path(self.cache_dir, fingerprint, cfg).exists():
            return load_or_build_index([], [], fingerprint, self.cache_dir, cfg)
        items = _readable(path)
        ids, structures = [i for i, _ in items], [s for _, s in items]
        return load_or_build_index(ids, structures, fingerprint, self.cache_dir, cfg, self.mapper)

    def _part_symmetry(self, path: Path, fingerprint: str) -> list[SymmetryInfo]:
        tolerance = f"symprec{self.config.symprec:g}-angle{self.config.angle_tolerance:g}"
        name = f"refsym-v3-{fingerprint}-{tolerance}.json.gz"
        cache = self.cache_dir / name
        if cache.exists():
            with gzip.open(cache, "rt") as handle:
                return [SymmetryInfo.from_dict(d) for d in json.load(handle)]
        infos = run_symmetry([s for _, s in _readable(path)], self.config, self.mapper)

        def _write(tmp: Path) -> None:
            with gzip.open(tmp, "wt") as handle:
                json.dump([i.to_dict() for i in infos], handle)

        atomic_write(cache, _write)
        return infos


def _readable(path: Path) -> list[tuple[str, Structure]]:
    """The readable structures of a dataset, with their ids."""
    return [(i, s) for i, s, _ in read_structures(path) if s is not None]


def draw(indices: Sequence[int], n: int, rng: np.random.Generator) -> list[int]:
    """A seeded draw of ``min(n, len(indices))`` items without replacement, in input order."""
    if len(indices) <= n:
        return list(indices)
    picked = rng.choice(len(indices), n, replace=False)
    return [indices[i] for i in sorted(picked)]


def _rate(num: int, den: int) -> float:
    return num / den if den else float("nan")


def run_uniqueness(
    structures: Sequence[Structure], config: EvaluateConfig, mapper: Mapper | None = None
) -> list[int]:
    """Unique-group label (index of the group's first member) of each structure."""
    return unique_groups(structures, config.matcher_config(), mapper=mapper)


def run_novelty(
    structures: Sequence[Structure],
    reference: Reference,
    config: EvaluateConfig,
    mapper: Mapper | None = None,
) -> list[str | None]:
    """Matched reference id of each structure, ``None`` when novel."""
    return novelty_matches(structures, reference.index(), config.matcher_config(), mapper=mapper)


def evaluate_samples(
    samples: Sequence[ReadResult],
    reference: Reference,
    config: EvaluateConfig | None = None,
    mapper: Mapper | None = None,
    known_reference: Sequence[str | Path] = (),
) -> EvaluationResult:
    """Run every de novo metric on a structure set.

    Parameters
    ----------
    samples
        Entries from :func:`tasks.core.structure_io.read_structures`.
    reference
        The training set (its index and symmetry summaries are cached on disk).
    config
        Seeds, draw sizes, workers, tolerances (default: the reference's config).
    mapper
        Where the chunks of validity, symmetry and matching work run (default:
        ``config.workers`` local processes; the Prefect flow runs them on Dask).
    known_reference
        Sets of known phases (the hull's: every MP-20 / MPTS-52 phase): the novel crystals
        that match one are marked ``known`` (:func:`tasks.evaluate.known.known_matches`).

    Returns
    -------
    EvaluationResult
        Metrics and the verdict table (one row per entry, in input order).
    """
    config = config or reference.config
    ids = [i for i, _, _ in samples]
    structures = [s for _, s, _ in samples]
    verdicts = run_validity(structures, config, mapper)
    valid = [i for i, v in enumerate(verdicts) if v.valid_struct and structures[i] is not None]
    valid_structs: list[Structure] = [s for i in valid if (s := structures[i]) is not None]
    sym = run_symmetry(valid_structs, config, mapper)
    sym_by_row = dict(zip(valid, sym, strict=True))

    labels = run_uniqueness(valid_structs, config, mapper)
    group_of = {valid[k]: valid[label] for k, label in enumerate(labels)}
    unique_rows = [valid[k] for k, label in enumerate(labels) if label == k]

    rng = np.random.default_rng(config.seed)
    novelty_rows = draw(unique_rows, config.novelty_draw, rng)
    structure_of = dict(zip(valid, valid_structs, strict=True))
    matched = run_novelty([structure_of[i] for i in novelty_rows], reference, config, mapper)
    match_of = dict(zip(novelty_rows, matched, strict=True))
    novel_rows = [i for i in novelty_rows if match_of[i] is None]
    dft_rows = set(draw(novel_rows, config.dft_draw, rng))
    known_of: dict[int, str | None] = {}
    if known_reference:
        pairs = [(str(i), structure_of[i]) for i in novel_rows]
        found = known_matches(pairs, known_reference, config.matcher_config(), mapper)
        known_of = {i: found[str(i)] for i in novel_rows}

    table = _verdict_table(samples, verdicts, sym_by_row, group_of, match_of, dft_rows, ids)
    table["known"] = [(known_of[i] is not None) if i in known_of else None for i in range(len(ids))]
    table["known_as"] = [known_of.get(i) or "" for i in range(len(ids))]
    n = len(samples)
    n_valid, n_unique = len(valid), len(unique_rows)
    n_drawn, n_novel = len(novelty_rows), len(novel_rows)
    uniqueness, novelty = _rate(n_unique, n_valid), _rate(n_novel, n_drawn)
    n_comp = sum(v.valid_comp for v in verdicts)
    metrics = EvaluationMetrics(
        n_samples=n,
        n_unreadable=sum(s is None for s in structures),
        structural_validity=_rate(n_valid, n),
        n_valid_struct=n_valid,
        compositional_validity=_rate(n_comp, n),
        n_valid_comp=n_comp,
        uniqueness=uniqueness,
        n_unique=n_unique,
        n_novelty_draw=n_drawn,
        novelty=novelty,
        n_novel=n_novel,
        un_rate=uniqueness * novelty if n_drawn else float("nan"),
        vun_rate=_rate(n_valid, n) * uniqueness * novelty if n_drawn else float("nan"),
        n_dft_draw=len(dft_rows),
        n_known=sum(v is not None for v in known_of.values()),
        known_reference=[str(p) for p in known_reference],
        distribution=distribution_metrics(
            sym, reference.symmetry(), config.symprec, config.angle_tolerance
        ),
        reference=ReferenceInfo(path=reference.label, fingerprint=reference.fingerprint),
        config=config.model_dump(mode="json"),
    )
    return EvaluationResult(metrics=metrics, verdicts=table)


def _verdict_table(
    samples: Sequence[ReadResult],
    verdicts: Sequence[ValidityVerdict],
    sym_by_row: dict[int, SymmetryInfo],
    group_of: dict[int, int],
    match_of: dict[int, str | None],
    dft_rows: set[int],
    ids: list[str],
) -> pd.DataFrame:
    rows = []
    for i, ((ident, structure, reason), verdict) in enumerate(zip(samples, verdicts, strict=True)):
        info = sym_by_row.get(i)
        rows.append(
            {
                "id": ident,
                "read_reason": reason,
                "formula": structure.composition.reduced_formula if structure else "",
                "n_atoms": len(structure) if structure else 0,
                **asdict(verdict),
                "spacegroup": info.spacegroup if info else 0,
                "is_p1": bool(info and info.spacegroup == 1),
                "n_orbits": info.n_orbits if info else 0,
                "n_atoms_primitive": info.n_primitive if info else 0,
                "wyckoffs": "".join(info.wyckoffs) if info else "",
                "symmetry_reason": info.reason if info else "",
                "unique_group": ids[group_of[i]] if i in group_of else "",
                "is_unique": group_of.get(i) == i,
                "in_novelty_draw": i in match_of,
                "novel": (match_of[i] is None) if i in match_of else None,
                "matched_reference": (match_of.get(i) or "") if i in match_of else "",
                "in_dft_draw": i in dft_rows,
            }
        )
    return pd.DataFrame(rows)


def write_evaluation(
    result: EvaluationResult, out_dir: str | Path, name: str = "samples"
) -> dict[str, Path]:
    """Write ``metrics.json``, ``verdicts.parquet``, ``verdicts.csv`` and ``summary.md``.

    Returns
    -------
    dict
        Output kind → path. Every file is written atomically.
    """
    out = Path(out_dir)
    table = result.verdicts
    paths = {
        "metrics": result.metrics.write(out / "metrics.json"),
        "verdicts_parquet": atomic_write(
            out / "verdicts.parquet", lambda tmp: table.to_parquet(tmp, index=False)
        ),
        "verdicts_csv": atomic_write(
            out / "verdicts.csv", lambda tmp: table.to_csv(tmp, index=False)
        ),
    }
    summary = f"# Evaluation of {name}\n\n{paper_row(result.metrics, name)}\n"
    paths["summary"] = write_text_atomic(out / "summary.md", summary)
    return paths


def evaluate_path(
    samples_path: str | Path, reference_path: str | Path, config: EvaluateConfig | None = None
) -> EvaluationResult:
    """Read a structure set and evaluate it against a reference dataset file or folder."""
    config = config or EvaluateConfig()
    samples = read_structures(samples_path)
    return evaluate_samples(samples, Reference(Path(reference_path), config), config)
