import numpy as np
import pytest

from representation.wyckoff_vocab import (
    PAPER_VOCAB_SIZE,
    crystal_system,
    wyckoff_vocabulary,
)


def test_vocabulary_matches_the_paper() -> None:
    vocab = wyckoff_vocabulary()
    assert vocab.size == PAPER_VOCAB_SIZE == 1731
    assert len(set(vocab.labels)) == vocab.size
    assert vocab.labels[vocab.index(225, "a")] == "225_4a"
    assert vocab.labels[vocab.index(221, "a")] == "221_1a"
    assert vocab.group_mask[225].sum() == 12  # Fm-3m has Wyckoff positions a..l
    assert vocab.group_mask[1].sum() == 1


def test_masks_count_degrees_of_freedom() -> None:
    vocab = wyckoff_vocabulary()
    assert np.array_equal(vocab.coord_mask.sum(axis=1), vocab.dof)
    general = vocab.index(14, "e")
    assert vocab.dof[general] == 3


def test_projection_is_idempotent_and_fixes_representatives() -> None:
    vocab = wyckoff_vocabulary()
    twice = np.einsum("vij,vjk->vik", vocab.proj_matrix, vocab.proj_matrix)
    assert np.allclose(twice, vocab.proj_matrix)
    # the representative R p + t of any parameters p is a fixed point
    rng = np.random.default_rng(0)
    params = rng.random((vocab.size, 3))
    points = np.einsum("vij,vj->vi", vocab.rotation, params) + vocab.translation
    projected = np.einsum("vij,vj->vi", vocab.proj_matrix, points) + vocab.proj_offset
    assert np.allclose(projected, points)


@pytest.mark.parametrize(
    ("group", "system"),
    [
        (1, "triclinic"),
        (14, "monoclinic"),
        (62, "orthorhombic"),
        (139, "tetragonal"),
        (166, "trigonal"),
        (194, "hexagonal"),
        (225, "cubic"),
    ],
)
def test_crystal_system(group: int, system: str) -> None:
    assert crystal_system(group) == system


def test_crystal_system_rejects_bad_numbers() -> None:
    with pytest.raises(ValueError):
        crystal_system(231)
