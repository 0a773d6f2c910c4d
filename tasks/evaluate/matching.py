"""Uniqueness and novelty with pymatgen's ``StructureMatcher``, fast and verdict-identical.

Definitions (``docs/evaluation.md``): two crystals are the same when
``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10).fit(a, b)`` is true. Uniqueness
groups a list the way ``StructureMatcher.group_structures`` does (greedy, in list order:
the first unassigned structure starts a group and takes every later unassigned structure
it fits). Novelty: a sample is novel when it fits no reference structure
(``fit(sample, reference)``, the argument order ADiT's evaluation uses).

Why the fast path changes no verdict. With the matcher settings fixed here
(``SpeciesComparator``, ``primitive_cell=True``, ``attempt_supercell=False``,
``allow_subset=False``):

1. ``fit`` returns False unless both fractional compositions are equal (its first check).
2. ``fit`` reduces both structures to Niggli primitive cells; without supercell attempts
   the site-assignment mask must be square, so reduced cells with different site counts
   never fit.

So a pair from different ``(fractional composition, reduced site count)`` buckets never
fits, and the greedy grouping restricted to one bucket is exactly the global greedy
grouping restricted to it. Each structure is reduced once, with the matcher's own
reduction (as ``group_structures`` does), and ``fit`` then skips the reduction. We do not
bucket by space group: loose tolerances can match structures whose detected groups differ.
Buckets are independent, so they run in parallel (a :data:`tasks.core.mapping.Mapper`: a local
process pool with one BLAS thread per worker, or the flow's Dask cluster).
"""

from __future__ import annotations

import gzip
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pymatgen.core
from pymatgen.core import Lattice, Structure

from tasks.core.atomic import atomic_write
from tasks.core.mapping import Mapper, resolve_mapper
from tasks.evaluate.settings import MatcherConfig

logger = logging.getLogger(__name__)

INDEX_FORMAT = 1

T = TypeVar("T")


@dataclass(frozen=True)
class Reduced:
    """A structure reduced once by the matcher, with its bucket key."""

    key: str
    structure: Structure


def composition_key(structure: Structure) -> str:
    """Canonical text of the fractional composition (species with oxidation states kept).

    Equal integer site counts give bit-identical fractions, so the key is equal exactly
    when pymatgen's ``Composition`` equality holds for ordered structures.
    """
    frac = structure.composition.fractional_composition
    return " ".join(f"{sp}:{amt:.10f}" for sp, amt in sorted(frac.items(), key=lambda x: str(x[0])))


def reduce_for_matching(structure: Structure, config: MatcherConfig) -> Reduced:
    """Reduce one structure exactly as ``StructureMatcher.group_structures`` does."""
    matcher = config.build()
    processed = matcher._process_species([structure])[0]
    reduced = matcher._get_reduced_structure(processed, matcher._primitive_cell, niggli=True)
    return Reduced(key=f"{composition_key(reduced)}|n={len(reduced)}", structure=reduced)


def _reduce_chunk(args: tuple[list[Structure], MatcherConfig]) -> list[Reduced]:
    structures, config = args
    return [reduce_for_matching(s, config) for s in structures]


#: The fewest structures a reduction chunk holds (see :func:`reduce_all`).
MIN_REDUCE_CHUNK = 32


def _chunks(items: Sequence[T], size: int) -> list[list[T]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def reduce_all(
    structures: Sequence[Structure], config: MatcherConfig, mapper: Mapper | None = None
) -> list[Reduced]:
    """Reduce many structures (with ``mapper``, default ``config.workers`` processes).

    Chunks hold 32 to 200 structures: a reduction takes milliseconds, a chunk that runs as a
    Prefect task on the cluster costs about 0.1 s, so a few known phases are one task, not one
    task each.
    """
    size = max(MIN_REDUCE_CHUNK, min(200, len(structures) // (config.workers * 4)))
    parts = resolve_mapper(mapper, config.workers)(
        _reduce_chunk, [(c, config) for c in _chunks(structures, size)]
    )
    return [r for part in parts for r in part]


def _group_bucket(args: tuple[list[int], list[Structure], MatcherConfig]) -> list[int]:
    """Greedy grouping of one bucket; returns the representative index for each member."""
    indices, structures, config = args
    matcher = config.build()
    labels = [-1] * len(indices)
    for i in range(len(indices)):
        if labels[i] >= 0:
            continue
        labels[i] = indices[i]
        for j in range(i + 1, len(indices)):
            if labels[j] < 0 and matcher.fit(
                structures[i], structures[j], skip_structure_reduction=True
            ):
                labels[j] = indices[i]
    return labels


def _buckets(keys: Iterable[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        out[key].append(i)
    return out


def unique_groups(
    structures: Sequence[Structure],
    config: MatcherConfig | None = None,
    reduced: Sequence[Reduced] | None = None,
    mapper: Mapper | None = None,
) -> list[int]:
    """Group structures like ``group_structures`` and label each by its group's first member.

    Parameters
    ----------
    structures
        Structures to group (already filtered to the valid ones).
    config
        Matcher tolerances and worker count.
    reduced
        ``reduce_all(structures, config)`` if already computed (saves the reduction).
    mapper
        Where the buckets run (default: ``config.workers`` local processes).

    Returns
    -------
    list of int
        For each structure, the index (into ``structures``) of the first structure of its
        group; a structure is the unique representative when the label equals its index.
    """
    config = config or MatcherConfig()
    mapper = resolve_mapper(mapper, config.workers)
    reduced = reduced if reduced is not None else reduce_all(structures, config, mapper)
    buckets = _buckets(r.key for r in reduced)
    jobs = [
        (idx, [reduced[i].structure for i in idx], config)
        for idx in sorted(buckets.values(), key=len, reverse=True)
    ]
    labels = [-1] * len(structures)
    for (idx, _, _), result in zip(jobs, mapper(_group_bucket, jobs), strict=True):
        for i, label in zip(idx, result, strict=True):
            labels[i] = label
    logger.info("uniqueness: %d structures, %d groups", len(structures), len(set(labels)))
    return labels


@dataclass
class ReferenceIndex:
    """Reference structures reduced once and bucketed, for novelty checks.

    Attributes
    ----------
    buckets
        Bucket key → list of ``(reference id, reduced structure)`` in reference order.
    meta
        Provenance: matcher settings, pymatgen version, dataset fingerprint, size.
    """

    buckets: dict[str, list[tuple[str, Structure]]]
    meta: dict[str, object]

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        structures: Sequence[Structure],
        config: MatcherConfig | None = None,
        fingerprint: str = "",
        mapper: Mapper | None = None,
    ) -> ReferenceIndex:
        """Reduce and bucket reference structures (``mapper``: see :func:`reduce_all`)."""
        config = config or MatcherConfig()
        buckets: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
        for ident, red in zip(ids, reduce_all(structures, config, mapper), strict=True):
            buckets[red.key].append((ident, red.structure))
        meta = {
            "format": INDEX_FORMAT,
            "matcher": config.settings(),
            "pymatgen": pymatgen.core.__version__,
            "fingerprint": fingerprint,
            "n_structures": len(ids),
            "n_buckets": len(buckets),
        }
        return cls(buckets=dict(buckets), meta=meta)

    @classmethod
    def union(cls, indexes: Sequence[ReferenceIndex], fingerprint: str = "") -> ReferenceIndex:
        """One index of several reference sets (bucket by bucket, in the given order)."""
        if not indexes:
            raise ValueError("no index to unite")
        buckets: dict[str, list[tuple[str, Structure]]] = defaultdict(list)
        for index in indexes:
            for key, entries in index.buckets.items():
                buckets[key].extend(entries)
        meta = {
            **indexes[0].meta,
            "fingerprint": fingerprint,
            "n_structures": sum(len(entries) for entries in buckets.values()),
            "n_buckets": len(buckets),
            "parts": [i.meta["fingerprint"] for i in indexes],
        }
        return cls(buckets=dict(buckets), meta=meta)

    def save(self, path: str | Path) -> Path:
        """Write the index atomically as gzipped JSON of plain arrays (no pickle).

        Each entry keeps the lattice matrix, species and fractional coordinates exactly
        (JSON floats round-trip), which is all ``fit`` reads.
        """
        payload = {
            "meta": self.meta,
            "buckets": {
                key: [
                    [
                        ident,
                        s.lattice.matrix.tolist(),
                        [str(sp) for sp in s.species],
                        s.frac_coords.tolist(),
                    ]
                    for ident, s in entries
                ]
                for key, entries in sorted(self.buckets.items())
            },
        }

        def _write(tmp: Path) -> None:
            with gzip.open(tmp, "wt", compresslevel=3) as handle:
                json.dump(payload, handle)

        return atomic_write(path, _write)

    @classmethod
    def load(cls, path: str | Path) -> ReferenceIndex:
        """Inverse of :meth:`save`."""
        with gzip.open(path, "rt") as handle:
            payload = json.load(handle)
        buckets = {
            key: [
                (ident, Structure(Lattice(matrix), species, coords))
                for ident, matrix, species, coords in entries
            ]
            for key, entries in payload["buckets"].items()
        }
        return cls(buckets=buckets, meta=payload["meta"])


def index_cache_path(cache_dir: str | Path, fingerprint: str, config: MatcherConfig) -> Path:
    """Where the index of a dataset with ``fingerprint`` lives for these matcher settings."""
    s = config.settings()
    tag = f"s{s['stol']}-l{s['ltol']}-a{s['angle_tol']}-pmg{pymatgen.core.__version__}"
    return Path(cache_dir) / f"refindex-{fingerprint}-{tag}-v{INDEX_FORMAT}.json.gz"


def load_or_build_index(
    ids: Sequence[str],
    structures: Sequence[Structure],
    fingerprint: str,
    cache_dir: str | Path,
    config: MatcherConfig | None = None,
    mapper: Mapper | None = None,
) -> ReferenceIndex:
    """Load the persisted index for ``fingerprint`` or build and persist it once.

    Parameters
    ----------
    ids, structures
        The reference set (only used when the index must be built).
    fingerprint
        Content hash of the reference dataset (:func:`tasks.core.structure_io.dataset_fingerprint`).
    cache_dir
        Folder of persisted indexes.
    config
        Matcher settings (part of the cache key) and worker count.
    mapper
        Where the reduction runs when the index must be built.
    """
    config = config or MatcherConfig()
    path = index_cache_path(cache_dir, fingerprint, config)
    if path.exists():
        logger.info("loading reference index %s", path)
        return ReferenceIndex.load(path)
    index = ReferenceIndex.build(ids, structures, config, fingerprint=fingerprint, mapper=mapper)
    index.save(path)
    logger.info("built reference index %s (%d buckets)", path, len(index.buckets))
    return index


def _novel_bucket(
    args: tuple[list[Structure], list[tuple[str, Structure]], MatcherConfig],
) -> list[str | None]:
    samples, refs, config = args
    matcher = config.build()
    out: list[str | None] = []
    for sample in samples:
        hit = next(
            (rid for rid, ref in refs if matcher.fit(sample, ref, skip_structure_reduction=True)),
            None,
        )
        out.append(hit)
    return out


def novelty_matches(
    samples: Sequence[Structure],
    index: ReferenceIndex,
    config: MatcherConfig | None = None,
    reduced: Sequence[Reduced] | None = None,
    mapper: Mapper | None = None,
) -> list[str | None]:
    """For each sample, the id of the first reference structure it fits, or ``None`` (novel).

    Parameters
    ----------
    samples
        Structures to check.
    index
        Reference index built with the same matcher tolerances.
    config
        Matcher tolerances and worker count.
    reduced
        ``reduce_all(samples, config)`` if already computed.
    mapper
        Where the buckets run (default: ``config.workers`` local processes).

    Returns
    -------
    list of str or None
        The first matching reference id in reference order, as the naive loop would find.
    """
    config = config or MatcherConfig()
    if index.meta.get("matcher") not in (None, config.settings()):
        raise ValueError(f"index built with {index.meta['matcher']}, not {config.settings()}")
    mapper = resolve_mapper(mapper, config.workers)
    reduced = reduced if reduced is not None else reduce_all(samples, config, mapper)
    buckets = _buckets(r.key for r in reduced)
    out: list[str | None] = [None] * len(samples)
    jobs, job_idx = [], []
    for key, idx in buckets.items():
        refs = index.buckets.get(key)
        if refs:
            jobs.append(([reduced[i].structure for i in idx], refs, config))
            job_idx.append(idx)
    order = sorted(range(len(jobs)), key=lambda j: len(jobs[j][0]) * len(jobs[j][1]), reverse=True)
    results = mapper(_novel_bucket, [jobs[j] for j in order])
    for j, result in zip(order, results, strict=True):
        for i, hit in zip(job_idx[j], result, strict=True):
            out[i] = hit
    logger.info("novelty: %d samples, %d novel", len(samples), sum(h is None for h in out))
    return out


def naive_unique_groups(
    structures: Sequence[Structure], config: MatcherConfig | None = None
) -> list[int]:
    """Reference path: one ``group_structures`` call over the whole list (slow)."""
    matcher = (config or MatcherConfig()).build()
    if len({id(s) for s in structures}) < len(structures):  # repeated objects: make distinct
        structures = [s.copy() for s in structures]
    position = {id(s): i for i, s in enumerate(structures)}
    labels = [-1] * len(structures)
    for group in matcher.group_structures(list(structures)):
        first = position[id(group[0])]
        for member in group:
            labels[position[id(member)]] = first
    return labels


def naive_novelty_matches(
    samples: Sequence[Structure],
    reference_ids: Sequence[str],
    references: Sequence[Structure],
    config: MatcherConfig | None = None,
) -> list[str | None]:
    """Reference path: ``fit`` of each sample against every reference in order (slow)."""
    matcher = (config or MatcherConfig()).build()
    return [
        next(
            (
                rid
                for rid, ref in zip(reference_ids, references, strict=True)
                if matcher.fit(s, ref)
            ),
            None,
        )
        for s in samples
    ]
