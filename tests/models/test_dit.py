"""Shared nn blocks: shapes, padding invariance, adaLN-Zero init, permutation equivariance."""

from __future__ import annotations

import pytest
import torch

from models.nn.dit import DiT
from models.nn.embeddings import TimestepEmbedder, sinusoidal_positions
from models.nn.transformer import TransformerEncoder

torch.set_num_threads(1)


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_dit_shapes_and_padding_invariance() -> None:
    torch.manual_seed(0)
    dit = DiT(hidden=32, depth=2, heads=4).eval()
    _randomize(dit)
    x = torch.randn(2, 6, 32)
    cond = torch.randn(2, 32)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = dit(x, cond, mask)
    assert out.shape == (2, 6, 32)
    # Changing padded tokens must not change the real tokens' outputs.
    x2 = x.clone()
    x2[1, 4:] = 100.0
    out2 = dit(x2, cond, mask)
    torch.testing.assert_close(out[1, :4], out2[1, :4])
    # A padded sample equals the same sample run alone without padding.
    alone = dit(x[1:2, :4], cond[1:2], None)
    torch.testing.assert_close(out[1:2, :4], alone, atol=1e-5, rtol=1e-5)


def test_dit_blocks_start_as_identity() -> None:
    dit = DiT(hidden=16, depth=3, heads=2)
    x = torch.randn(3, 5, 16)
    out = dit(x, torch.randn(3, 16))
    ref = torch.nn.functional.layer_norm(x, (16,), eps=1e-6)
    torch.testing.assert_close(out, ref)


def test_transformer_is_permutation_equivariant() -> None:
    enc = TransformerEncoder(hidden=16, depth=2, heads=4).eval()
    x = torch.randn(1, 5, 16)
    mask = torch.tensor([[True, True, True, True, False]])
    perm = torch.tensor([2, 0, 3, 1, 4])
    out = enc(x, mask)
    out_perm = enc(x[:, perm], mask[:, perm])
    torch.testing.assert_close(out[:, perm][:, :4], out_perm[:, :4], atol=1e-5, rtol=1e-5)


def test_embeddings() -> None:
    emb = TimestepEmbedder(24)
    assert emb(torch.rand(7)).shape == (7, 24)
    pos = sinusoidal_positions(10, 8)
    assert pos.shape == (10, 8)
    assert not torch.allclose(pos[0], pos[1])


def test_dit_with_pair_features_masks_padding_and_reads_pairs() -> None:
    dit = DiT(hidden=32, depth=2, heads=4, pair_dim=5).eval()
    _randomize(dit, seed=1)
    x, cond = torch.randn(2, 6, 32), torch.randn(2, 32)
    pair = torch.randn(2, 6, 6, 5)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    out = dit(x, cond, mask, pair)
    # Padded tokens and every pair entry that touches them are ignored.
    x2, pair2 = x.clone(), pair.clone()
    x2[1, 4:] = 100.0
    pair2[1, 4:] = 50.0
    pair2[1, :, 4:] = -50.0
    torch.testing.assert_close(out[1, :4], dit(x2, cond, mask, pair2)[1, :4])
    alone = dit(x[1:2, :4], cond[1:2], None, pair[1:2, :4, :4])
    torch.testing.assert_close(out[1:2, :4], alone, atol=1e-5, rtol=1e-5)
    # The pairs between real tokens do matter.
    pair3 = pair.clone()
    pair3[0, 0, 1] += 1.0
    assert not torch.allclose(out[0], dit(x, cond, mask, pair3)[0])
    with pytest.raises(ValueError, match="pair features"):
        dit(x, cond, mask)
