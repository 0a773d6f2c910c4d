"""Plain pre-LN Transformer encoder with a padding mask and no positional embeddings.

Order-free by construction (permutation-equivariant over real tokens), which is what
the SymADiT autoencoder needs for its orbit tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from models.nn.attention import SelfAttention, key_padding_bias


class TransformerBlock(nn.Module):
    """Pre-LN block: ``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` (GELU feed-forward)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, dropout)
        self.norm2 = nn.LayerNorm(hidden)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Dropout(dropout), nn.Linear(inner, hidden)
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``[B, N, H]``; ``attn_mask`` ``[B, 1, 1, N]`` bool or None."""
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    """A stack of :class:`TransformerBlock` with a final LayerNorm.

    Parameters
    ----------
    hidden, depth, heads
        Width, number of blocks, attention heads.
    mlp_ratio
        Feed-forward width multiplier.
    dropout
        Dropout in attention and feed-forward.
    """

    def __init__(
        self, hidden: int, depth: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, mlp_ratio, dropout) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``x`` ``[B, N, H]``; ``mask`` ``[B, N]`` bool, True = real token."""
        attn_mask = key_padding_bias(mask)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.norm(x)
