"""The shipped analysis seed: a new user's first ingestion of the bundled sample is a lookup.

The seed must cover every crystal of the quick profile's training set under its ingestion
settings, and hold exactly what a fresh analysis computes.
"""

from __future__ import annotations

import random
from dataclasses import asdict

import numpy as np
import pytest

from tasks.core.config import load_config
from tasks.core.records import structure_from_json
from tasks.ingest.analysis import analyse_entry, cache_key
from tasks.ingest.analysis_cache import read_seeds, record_fields
from tasks.ingest.run import SEED_FILES, ingest_entries, seed_path
from tasks.ingest.sources import source_entries
from tasks.pipeline.config import PipelineConfig

REBUILD = "rebuild it with `discovery ingest --write-seed data/samples`"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    config = load_config("quick", PipelineConfig)
    source = config.datasets["train"]
    cache = tmp_path_factory.mktemp("cache")
    ingest = config.ingest.model_copy(update={"cache_dir": cache, "n_workers": 1})
    return source, ingest, source_entries(source, cache)


def test_the_seed_covers_the_bundled_sample(quick) -> None:
    source, ingest, entries = quick
    assert seed_path(source, SEED_FILES[0].parent) in SEED_FILES
    seeded = read_seeds(SEED_FILES)
    missing = [e.id for e in entries if cache_key(e, ingest) not in seeded]
    assert not missing, f"{len(missing)} entries not in the seed: {REBUILD}"
    # an empty cache: every record comes from the seed, none is analysed
    records, n_cached = ingest_entries(entries, ingest)
    assert n_cached == len(entries) == len(records)


def split_structure(fields: dict) -> tuple[dict, np.ndarray, np.ndarray, list[str]]:
    """A record's fields without its structure, and the structure's lattice, fractional
    coordinates and species."""
    rest = dict(fields)
    structure = structure_from_json(rest.pop("structure"))
    species = [site.specie.symbol for site in structure]
    return rest, structure.lattice.matrix, structure.frac_coords, species


def test_the_seed_holds_what_a_fresh_analysis_computes(quick) -> None:
    """Every field exactly, the reduced structure to 1e-9 (its JSON's last digits change
    with the numerical libraries: in a fresh venv of 2026-12-07, numpy 2.4.6 and spglib
    2.8.0, 294 of the first 300 differed in the 16th digit, some coordinates wrapping from
    1e-17 to 1 - 1e-16)."""
    _, ingest, entries = quick
    seeded = read_seeds(SEED_FILES)
    for entry in random.Random(0).sample(list(entries), 12):
        fresh = analyse_entry(entry, ingest)
        rest, lattice, frac, species = split_structure(seeded[cache_key(entry, ingest)])
        rest_now, lattice_now, frac_now, species_now = split_structure(record_fields(fresh))
        assert rest == rest_now and species == species_now, (entry.id, REBUILD)
        assert np.allclose(lattice, lattice_now, rtol=0, atol=1e-9), (entry.id, REBUILD)
        shift = frac - frac_now  # periodic: 1e-17 and 0.99999999999999999 are one place
        assert np.allclose(shift - np.round(shift), 0, atol=1e-9), (entry.id, REBUILD)
        assert asdict(fresh)["status"] == "ok"
