"""Known vs novel: which "novel" crystals are in fact phases of MP-20 / MPTS-52.

The papers' novelty is judged against the training set only; a crystal that is novel in that
sense can still be a known material of the other splits (MnO2 from a model trained on a
1,000-crystal sample). :func:`known_matches` checks crystals against every phase of the
hull's reference sets with the same matcher as novelty. Only reference phases with a
sample's reduced formula are parsed (equal fractional compositions are the matcher's first
requirement), so checking a handful of candidates against ~50,000 phases takes seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

from pymatgen.core import Composition, Structure

from tasks.core.mapping import Mapper
from tasks.core.structure_io import read_entries
from tasks.evaluate.matching import ReferenceIndex, novelty_matches
from tasks.evaluate.settings import MatcherConfig


@cache
def reduced(formula: str) -> str:
    """The reduced formula pymatgen writes (tables may order elements differently)."""
    return Composition(formula).reduced_formula


def known_matches(
    samples: Sequence[tuple[str, Structure]],
    references: Sequence[str | Path],
    config: MatcherConfig | None = None,
    mapper: Mapper | None = None,
) -> dict[str, str | None]:
    """For each sample, the id of a reference phase it matches, or ``None``.

    Parameters
    ----------
    samples
        ``(id, structure)`` pairs.
    references
        Structure sets of known phases (CSV splits, records, a reference energy table).
    config
        Matcher tolerances (the novelty matcher's).
    mapper
        Where the matching buckets run.
    """
    config = config or MatcherConfig()
    wanted = {s.composition.reduced_formula for _, s in samples}
    ids, structures = [], []
    for path in references:
        for entry in read_entries(path):
            if entry.reason or (entry.formula and reduced(entry.formula) not in wanted):
                continue
            structure, _ = entry.parse()
            if structure is not None and structure.composition.reduced_formula in wanted:
                ids.append(entry.id)
                structures.append(structure)
    if not samples:
        return {}
    index = ReferenceIndex.build(ids, structures, config, mapper=mapper)
    hits = novelty_matches([s for _, s in samples], index, config, mapper=mapper)
    return {ident: hit for (ident, _), hit in zip(samples, hits, strict=True)}
