"""SymADiT data: padding, masks, training distributions, dataset loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support.symadit import sample_tokens, write_token_dataset

from models.symadit.data import TokenStats, collate_tokens, load_tokens
from representation.wyckoff_vocab import wyckoff_vocabulary


def test_collate_pads_and_masks() -> None:
    tokens = sample_tokens(16)
    batch = collate_tokens(tokens)
    k = [t.n_orbits for t in tokens]
    assert batch.wyckoff.shape == (16, max(k))
    assert batch.mask.sum(1).tolist() == k
    vocab = wyckoff_vocabulary()
    for i, t in enumerate(tokens):
        n = t.n_orbits
        assert batch.wyckoff[i, :n].tolist() == list(t.wyckoff)
        assert (batch.wyckoff[i, n:] == 0).all() and (batch.elements[i, n:] == 0).all()
        assert not batch.coord_mask[i, n:].any()
        assert np.array_equal(batch.coord_mask[i, :n].numpy(), vocab.coord_mask[t.wyckoff])
        assert np.array_equal(batch.cell_mask[i].numpy(), t.cell_mask)
        assert int(batch.spacegroup[i]) == t.spacegroup
    assert collate_tokens(tokens, pad_to=25).wyckoff.shape[1] == 25
    with pytest.raises(ValueError):
        collate_tokens(tokens, pad_to=1)


def test_stats_distributions_and_roundtrip() -> None:
    tokens = sample_tokens(64)
    stats = TokenStats.from_tokens(tokens)
    p = stats.spacegroup_probs
    assert p.shape == (231,) and p[0] == 0 and np.isclose(p.sum(), 1)
    groups = {t.spacegroup for t in tokens}
    assert set(np.flatnonzero(p)) == groups
    for g in groups:
        pk = stats.orbit_probs(g)
        seen = {t.n_orbits for t in tokens if t.spacegroup == g}
        assert set(np.flatnonzero(pk)) == seen
    # a group never seen falls back to the marginal p(K)
    unseen = next(g for g in range(1, 231) if g not in groups)
    assert np.isclose(stats.orbit_probs(unseen).sum(), 1)
    rng = np.random.default_rng(0)
    g = stats.sample_spacegroups(200, rng)
    assert set(g) <= groups
    k = stats.sample_orbit_counts(g, rng)
    assert (k >= 1).all() and (k <= stats.max_orbits).all()
    again = TokenStats.from_dict(stats.to_dict())
    assert again == stats
    assert stats.element_mask[[z for t in tokens for z in t.elements]].all()


def test_cell_normalization_roundtrip() -> None:
    stats = TokenStats.from_tokens(sample_tokens(64))
    cell = torch.tensor([[5.0, 6.0, 7.0, 90.0, 100.0, 90.0], [3.1, 3.1, 9.0, 90.0, 90.0, 120.0]])
    back = stats.denormalize_cell(stats.normalize_cell(cell))
    assert torch.allclose(back, cell, atol=1e-4)


def test_load_tokens_from_records(tmp_path) -> None:
    tokens = sample_tokens(16)
    path = write_token_dataset(tokens, tmp_path / "dataset.parquet")
    loaded = load_tokens(path)
    assert [t.to_json() for t in loaded] == [t.to_json() for t in tokens]
    assert len(load_tokens(tmp_path)) == 16  # a directory means its dataset.parquet
    with pytest.raises(FileNotFoundError):
        load_tokens(tmp_path / "missing.parquet")


def test_load_tokens_from_csv_is_cached(tmp_path, mp20_test_sample) -> None:
    import pandas as pd

    csv = tmp_path / "few.csv"
    pd.read_csv(mp20_test_sample).head(5).to_csv(csv, index=False)
    first = load_tokens(csv, cache_dir=tmp_path / "cache")
    assert len(first) == 5
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 1
    second = load_tokens(csv, cache_dir=tmp_path / "cache")
    assert [t.to_json() for t in first] == [t.to_json() for t in second]
