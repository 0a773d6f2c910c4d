"""The ingested MP-20 splits agree with the statistics table of ../shared/data/README.md.

Slow on a cold cache (~30,000 structures); instant once ``data/cache`` holds the analyses.
The table was computed on the CIF cells; we reduce to the primitive cell (site tolerance
0.01 Å), which halves the ~0.7 % of MP-20 cells that are not primitive, hence the small
tolerance on atoms per cell and on the count of (space group, letter) pairs.
"""

import pytest

from benchmarks.ingest_benchmark import SHARED_TABLE, measured_row
from tasks.ingest.config import IngestConfig
from tasks.ingest.run import ingest_path


@pytest.mark.slow
def test_mp20_statistics_match_the_shared_table(shared_data, tmp_path) -> None:
    results = ingest_path(shared_data / "mp_20", tmp_path, IngestConfig(plots=False))
    for result in results:
        ours, theirs = measured_row(result.stats), SHARED_TABLE[result.name]
        assert result.stats["counts"]["failed"] == 0
        assert ours["p1"] == pytest.approx(theirs["p1"], abs=0.05)
        assert ours["n_sg"] == theirs["n_sg"]
        assert ours["atoms"] == pytest.approx(theirs["atoms"], abs=0.05)
        assert ours["elements"] == pytest.approx(theirs["elements"], abs=0.002)
        assert ours["orbits"] == pytest.approx(theirs["orbits"], abs=0.01)
        assert abs(ours["pairs"] - theirs["pairs"]) <= 5
