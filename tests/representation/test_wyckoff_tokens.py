import numpy as np
import pandas as pd
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from representation.wyckoff_tokens import (
    WyckoffTokens,
    structure_to_tokens,
    tokens_to_structure,
)
from representation.wyckoff_vocab import wyckoff_vocabulary

MATCHER = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)


def nacl() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_nacl_tokens_match_the_paper_example() -> None:
    tokens = structure_to_tokens(nacl().get_primitive_structure())
    assert tokens.spacegroup == 225
    assert set(tokens.labels) == {"225_4a", "225_4b"}
    assert set(tokens.elements.tolist()) == {11, 17}
    assert not tokens.coord_mask.any()  # both orbits have 0 DOF
    assert tokens.cell_mask.tolist() == [True, False, False, False, False, False]
    assert tokens.cell[0] == pytest.approx(5.69, abs=1e-3)


def test_json_round_trip() -> None:
    tokens = structure_to_tokens(nacl())
    again = WyckoffTokens.from_json(tokens.to_json())
    assert again.spacegroup == tokens.spacegroup
    assert np.array_equal(again.wyckoff, tokens.wyckoff)
    assert np.allclose(again.coords, tokens.coords)


def test_round_trip_on_mp20_sample(mp20_test_sample) -> None:
    frame = pd.read_csv(mp20_test_sample, nrows=40)
    vocab = wyckoff_vocabulary()
    misses = []
    for material_id, cif in zip(frame["material_id"], frame["cif"], strict=True):
        structure = Structure.from_str(cif, fmt="cif")
        tokens = structure_to_tokens(structure)
        # representatives lie on their positions: the projection leaves them unchanged
        proj = np.einsum("kij,kj->ki", vocab.proj_matrix[tokens.wyckoff], tokens.coords)
        proj += vocab.proj_offset[tokens.wyckoff]
        assert np.allclose((proj - tokens.coords + 0.5) % 1 - 0.5, 0, atol=1e-6)
        if not MATCHER.fit(structure, tokens_to_structure(tokens)):
            misses.append(material_id)
    assert misses == []


def test_invalid_tokens_raise_clear_error() -> None:
    tokens = structure_to_tokens(nacl())
    tokens.wyckoff = np.array([wyckoff_vocabulary().index(221, "a")] * 2)
    with pytest.raises(ValueError, match="not in group 225"):
        tokens_to_structure(tokens)
