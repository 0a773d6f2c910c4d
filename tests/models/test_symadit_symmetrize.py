"""Property tests of the batched symmetrizers (hypothesis)."""

from functools import cache

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyxtal.symmetry import Group

from models.symadit.symmetrize import (
    cell_free_mask,
    coord_free_mask,
    symmetrize_coords,
    tie_cell,
    wyckoff_logit_mask,
)
from representation.wyckoff_vocab import wyckoff_vocabulary

VOCAB = wyckoff_vocabulary()
positions = st.integers(min_value=0, max_value=VOCAB.size - 1)
points = st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=3, max_size=3)


@cache
def _site_symmetry(group: int, letter: str) -> list:
    wp = next(w for w in Group(group).Wyckoff_positions if w.letter == letter)
    return wp.symmetry[0]  # site-symmetry operations of the representative


def _wrap_close(a: np.ndarray, b: np.ndarray, atol: float = 1e-7) -> bool:
    diff = np.asarray(a) - np.asarray(b)
    return bool(np.all(np.abs(diff - np.round(diff)) < atol))


@settings(max_examples=300, deadline=None)
@given(index=positions, point=points)
def test_symmetrize_is_idempotent(index: int, point: list[float]) -> None:
    coords = torch.tensor([point], dtype=torch.float64)
    wyckoff = torch.tensor([index])
    once = symmetrize_coords(coords, wyckoff)
    twice = symmetrize_coords(once, wyckoff)
    assert _wrap_close(once.numpy(), twice.numpy())
    assert torch.all((once >= 0) & (once < 1))


@settings(max_examples=200, deadline=None)
@given(index=positions, point=points)
def test_symmetrized_point_is_invariant_under_site_symmetry(index: int, point: list[float]) -> None:
    sym = symmetrize_coords(torch.tensor([point], dtype=torch.float64), torch.tensor([index]))
    p = sym[0].numpy()
    group, letter = int(VOCAB.spacegroup[index]), VOCAB.letter[index]
    for op in _site_symmetry(group, letter):
        assert _wrap_close(op.operate(p), p, atol=1e-6), (VOCAB.labels[index], op.as_xyz_str())


@settings(max_examples=200, deadline=None)
@given(index=positions, point=points)
def test_free_coordinates_pass_through(index: int, point: list[float]) -> None:
    coords = torch.tensor([point], dtype=torch.float64)
    wyckoff = torch.tensor([index])
    sym = symmetrize_coords(coords, wyckoff)
    mask = coord_free_mask(wyckoff)
    assert _wrap_close(sym[mask].numpy(), coords[mask].numpy())


def test_batched_shapes_and_gradients() -> None:
    coords = torch.rand(4, 7, 3, requires_grad=True)
    wyckoff = torch.randint(0, VOCAB.size, (4, 7))
    out = symmetrize_coords(coords, wyckoff)
    assert out.shape == (4, 7, 3)
    out.sum().backward()
    assert coords.grad is not None


@settings(max_examples=200, deadline=None)
@given(
    group=st.integers(1, 230),
    cell=st.lists(st.floats(2.0, 20.0), min_size=6, max_size=6),
)
def test_tie_cell(group: int, cell: list[float]) -> None:
    raw = torch.tensor([cell[:3] + [60 + 6 * c for c in cell[3:]]], dtype=torch.float64)
    g = torch.tensor([group])
    tied = tie_cell(raw, g)
    assert torch.allclose(tie_cell(tied, g), tied)
    free = cell_free_mask(g)
    assert torch.allclose(tied[free], raw[free])  # free parameters pass through
    a, b, c, alpha, beta, gamma = tied[0].tolist()
    if group >= 195:
        assert a == b == c and alpha == beta == gamma == 90
    elif group >= 143:
        assert a == b and alpha == beta == 90 and gamma == 120
    elif group >= 75:
        assert a == b and alpha == beta == gamma == 90
    elif group >= 16:
        assert alpha == beta == gamma == 90
    elif group >= 3:
        assert alpha == gamma == 90


def test_logit_mask_selects_the_group() -> None:
    mask = wyckoff_logit_mask(torch.tensor([225, 1]))
    assert mask.shape == (2, VOCAB.size)
    assert mask[0].sum() == 12 and mask[1].sum() == 1
    assert all(VOCAB.spacegroup[i] == 225 for i in torch.nonzero(mask[0]).flatten().tolist())
