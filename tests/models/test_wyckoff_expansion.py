"""The vectorised Wyckoff expansion gives pyxtal's structures, site by site."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Structure

from models.symadit.symmetrize import symmetrize_coords, tie_cell
from representation.wyckoff_tokens import (
    WyckoffTokens,
    expand_batch,
    structure_to_tokens,
    tokens_to_structure,
)
from representation.wyckoff_vocab import wyckoff_vocabulary


def random_tokens(n: int, seed: int) -> list[WyckoffTokens]:
    """``n`` token sets, the groups in turn: 1-4 random positions, symmetrized coords and cell."""
    vocab = wyckoff_vocabulary()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        group = i % 230 + 1
        positions = np.flatnonzero(vocab.group_mask[group])
        wyckoff = rng.choice(positions, size=int(rng.integers(1, 5)))
        coords = symmetrize_coords(torch.as_tensor(rng.random((len(wyckoff), 3))),
                                   torch.as_tensor(wyckoff))  # fmt: skip
        cell = np.concatenate([rng.uniform(3, 12, 3), rng.uniform(70, 115, 3)])
        cell = tie_cell(torch.as_tensor(cell)[None], torch.tensor([group]))[0].numpy()
        elements = rng.choice([3, 8, 11, 17, 26, 29, 56, 79], size=len(wyckoff))
        out.append(WyckoffTokens(group, cell, wyckoff, elements, coords.numpy()))
    return out


def _same(ours: Structure, theirs: Structure) -> bool:
    return (
        np.allclose(ours.lattice.matrix, theirs.lattice.matrix, atol=1e-8)
        and [s.symbol for s in ours.species] == [s.symbol for s in theirs.species]
        and np.allclose(ours.frac_coords, theirs.frac_coords, atol=1e-8)
    )


def test_a_thousand_random_token_sets_expand_as_pyxtal_does() -> None:
    tokens = random_tokens(1000, seed=0)
    ours = expand_batch(tokens)
    compared = 0
    for t, mine in zip(tokens, ours, strict=True):
        try:
            theirs = tokens_to_structure(t)
        except ValueError:  # a cell whose angles do not close: refused by both
            assert isinstance(mine, str) and "does not exist" in mine
            continue
        assert not isinstance(mine, str), mine
        assert _same(mine, theirs), t
        compared += 1
    assert compared > 900
    assert len({t.spacegroup for t in tokens}) == 230


def test_real_crystals_expand_as_pyxtal_does(mp20_test_sample) -> None:
    cifs = pd.read_csv(mp20_test_sample, nrows=60)["cif"]
    tokens = [structure_to_tokens(Structure.from_str(c, fmt="cif")) for c in cifs]
    for t, mine in zip(tokens, expand_batch(tokens), strict=True):
        assert not isinstance(mine, str) and _same(mine, tokens_to_structure(t))


def test_tokens_that_cannot_be_a_crystal_get_a_reason() -> None:
    vocab = wyckoff_vocabulary()
    good = random_tokens(1, seed=1)[0]
    cube = np.array([5.0, 5, 5, 90, 90, 90])

    def one_orbit(group: int, cell: np.ndarray, position: str, coords: float) -> WyckoffTokens:
        index = np.array([vocab.index(int(position.split("_")[0]), position.split("_")[1])])
        return WyckoffTokens(group, cell, index, np.array([11]), np.full((1, 3), coords))

    foreign = one_orbit(225, cube, "221_a", 0.0)
    off = one_orbit(225, cube, "225_a", 0.3)
    flat = one_orbit(1, np.array([5.0, 5, 5, 150, 150, 150]), "1_a", 0.0)
    results = expand_batch([good, foreign, off, flat])
    assert isinstance(results[0], Structure)
    assert results[1] == "Wyckoff position 221_1a is not in group 225"
    assert results[2] == "coordinates off their Wyckoff position 225_4a"
    assert "does not exist" in results[3]
    with pytest.raises(ValueError):
        tokens_to_structure(flat)
