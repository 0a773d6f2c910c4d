"""The shipped analysis seed: a new user's first ingestion of the bundled sample is a lookup.

The seed must cover every crystal of the quick profile's training set under its ingestion
settings, and hold exactly what a fresh analysis computes.
"""

from __future__ import annotations

import random
from dataclasses import asdict

import pytest

from tasks.core.config import load_config
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


def test_the_seed_holds_what_a_fresh_analysis_computes(quick) -> None:
    _, ingest, entries = quick
    seeded = read_seeds(SEED_FILES)
    for entry in random.Random(0).sample(list(entries), 12):
        fresh = analyse_entry(entry, ingest)
        assert seeded[cache_key(entry, ingest)] == record_fields(fresh), (entry.id, REBUILD)
        assert asdict(fresh)["status"] == "ok"
