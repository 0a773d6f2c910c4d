"""Diffusion Transformer (DiT) with adaLN-Zero conditioning and key-padding masks.

This is the project's one DiT: MCFlow runs it over atoms, SymADiT over latent orbit tokens.
Input tokens are already embedded (``[B, N, H]``); the caller adds whatever positional
information it wants and applies its own output heads to the returned features.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from models.nn.attention import SelfAttention, key_padding_bias


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation ``x * (1 + scale) + shift`` with per-sample ``[B, H]`` parameters."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """One DiT block: adaLN-Zero-modulated self-attention and MLP, both residual.

    The conditioning vector produces shift, scale and gate for each of the two branches;
    the modulation layer is zero-initialized so that every block starts as the identity.

    Parameters
    ----------
    hidden, heads
        Token width and number of attention heads.
    mlp_ratio
        Width multiplier of the feed-forward branch.
    dropout
        Attention dropout.
    pair_dim, edge_hidden
        Size of pair features fed to the attention (0 = none) and of its edge MLP (0 = none;
        see :class:`SelfAttention`).
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pair_dim: int = 0,
        edge_hidden: int = 0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads, dropout, pair_dim, edge_hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        inner = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(approximate="tanh"), nn.Linear(inner, hidden)
        )
        ada = nn.Linear(hidden, 6 * hidden)
        nn.init.zeros_(ada.weight)
        nn.init.zeros_(ada.bias)
        self.ada = nn.Sequential(nn.SiLU(), ada)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x`` ``[B, N, H]``, ``cond`` ``[B, H]``, ``attn_mask`` ``[B, 1, 1, N]`` or None,
        ``pair`` ``[B, N, N, P]`` or None."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(cond).chunk(6, dim=-1)
        attended = self.attn(modulate(self.norm1(x), shift1, scale1), attn_mask, pair)
        x = x + gate1.unsqueeze(1) * attended
        return x + gate2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalAdaLN(nn.Module):
    """Final layer norm whose shift and scale come from the conditioning (zero-initialized)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        ada = nn.Linear(hidden, 2 * hidden)
        nn.init.zeros_(ada.weight)
        nn.init.zeros_(ada.bias)
        self.ada = nn.Sequential(nn.SiLU(), ada)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Normalize ``x`` ``[B, N, H]`` and modulate it by ``cond`` ``[B, H]``."""
        shift, scale = self.ada(cond).chunk(2, dim=-1)
        return modulate(self.norm(x), shift, scale)


class DiT(nn.Module):
    """A stack of :class:`DiTBlock` followed by :class:`FinalAdaLN`.

    Parameters
    ----------
    hidden
        Token and conditioning width.
    depth
        Number of blocks.
    heads
        Attention heads per block.
    mlp_ratio
        Feed-forward width multiplier.
    dropout
        Attention dropout.
    pair_dim
        Size of pair features every block's attention reads (0 = none).
    edge_hidden
        Width of each block's edge MLP on the pair features (0 = none).

    Examples
    --------
    >>> dit = DiT(hidden=64, depth=2, heads=4)
    >>> x, c = torch.randn(2, 5, 64), torch.randn(2, 64)
    >>> mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    >>> dit(x, c, mask).shape
    torch.Size([2, 5, 64])
    """

    def __init__(
        self,
        hidden: int,
        depth: int,
        heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        pair_dim: int = 0,
        edge_hidden: int = 0,
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.blocks = nn.ModuleList(
            DiTBlock(hidden, heads, mlp_ratio, dropout, pair_dim, edge_hidden) for _ in range(depth)
        )
        self.final = FinalAdaLN(hidden)
        self._init_weights()

    def _init_weights(self) -> None:
        for block in cast("list[DiTBlock]", self.blocks):
            first, last = cast(nn.Linear, block.mlp[0]), cast(nn.Linear, block.mlp[2])
            for layer in (block.attn.qkv, block.attn.proj, first, last):
                nn.init.xavier_uniform_(layer.weight)
                nn.init.zeros_(layer.bias)

    def forward(
        self,
        x: torch.Tensor,
        cond: torch.Tensor,
        mask: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the stack.

        Parameters
        ----------
        x
            Embedded tokens ``[B, N, H]``.
        cond
            Conditioning vector ``[B, H]`` (e.g. the sum of time embeddings).
        mask
            ``[B, N]`` bool, True for real tokens; padded keys are masked out of attention.
            Outputs at padded positions are meaningless and should be ignored by the caller.
        pair
            ``[B, N, N, pair_dim]`` pair features (only when built with ``pair_dim > 0``).

        Returns
        -------
        torch.Tensor
            ``[B, N, H]`` features after the final adaLN layer norm.
        """
        attn_mask = key_padding_bias(mask)
        for block in self.blocks:
            x = block(x, cond, attn_mask, pair)
        return self.final(x, cond)
