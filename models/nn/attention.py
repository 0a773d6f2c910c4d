"""Multi-head self-attention with a key-padding mask and optional pair features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def key_padding_bias(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Turn a ``[B, N]`` bool mask (True = real token) into an SDPA mask ``[B, 1, 1, N]``."""
    if mask is None:
        return None
    return mask[:, None, None, :].to(torch.bool)


class EdgeMLP(nn.Module):
    """Edge features ``e_ij = W₂ SiLU(A x_i + B x_j + C p_ij + b)`` of width ``edge_hidden``."""

    def __init__(self, hidden: int, pair_dim: int, edge_hidden: int) -> None:
        super().__init__()
        self.source = nn.Linear(hidden, edge_hidden)
        self.target = nn.Linear(hidden, edge_hidden, bias=False)
        self.pair = nn.Linear(pair_dim, edge_hidden, bias=False)
        self.out = nn.Linear(edge_hidden, edge_hidden)

    def forward(self, x: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, N, H]`` and ``pair`` ``[B, N, N, P]`` → ``[B, N, N, edge_hidden]``."""
        first = self.source(x)[:, :, None, :] + self.target(x)[:, None, :, :] + self.pair(pair)
        return self.out(F.silu(first))


class SelfAttention(nn.Module):
    """Multi-head self-attention over tokens ``[B, N, H]``.

    Parameters
    ----------
    hidden
        Token width; must be divisible by ``heads``.
    heads
        Number of attention heads.
    dropout
        Attention dropout probability (training only).
    pair_dim
        Size of optional pair features ``[B, N, N, pair_dim]`` (0 = none). With them, each
        head adds a learned bias ``Lin(e_ij)`` to its logits and also returns the
        attention-weighted edge features ``Σ_j a_ij e_ij`` (mapped back to ``hidden``):
        tokens read relations between atoms (e.g. periodic offsets) directly.
    edge_hidden
        0: the edge features are the pair features, ``e_ij = p_ij``. Otherwise a small edge
        MLP of this width, ``e_ij = W₂ SiLU(A x_i + B x_j + C p_ij)``, lets the relation
        depend on the two atoms too (the first layer of an MLP on ``[x_i, x_j, p_ij]``,
        factorized so that it costs ``N·H·E + N²·P·E`` rather than ``N²·(2H + P)·E``).
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        dropout: float = 0.0,
        pair_dim: int = 0,
        edge_hidden: int = 0,
    ) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        if edge_hidden and not pair_dim:
            raise ValueError("an edge MLP needs pair features (pair_dim > 0)")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.edge = EdgeMLP(hidden, pair_dim, edge_hidden) if edge_hidden else None
        edge_dim = edge_hidden or pair_dim
        self.pair_bias = nn.Linear(edge_dim, heads) if pair_dim else None
        self.pair_out = nn.Linear(heads * edge_dim, hidden) if pair_dim else None

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        pair: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend over ``x`` ``[B, N, H]``; ``attn_mask`` from :func:`key_padding_bias`.

        Padded keys are never attended to; padded queries still produce (ignored) outputs,
        so every sample must contain at least one real token. ``pair`` (``[B, N, N, P]``)
        is required exactly when the layer was built with ``pair_dim > 0``.
        """
        B, N, H = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        if self.pair_bias is None or self.pair_out is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
            return self.proj(out.transpose(1, 2).reshape(B, N, H))
        if pair is None:
            raise ValueError("this attention layer was built with pair features: pass `pair`")
        if self.edge is not None:
            pair = self.edge(x, pair)
        logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        logits = logits + self.pair_bias(pair).permute(0, 3, 1, 2).to(logits.dtype)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        weights = F.dropout(torch.softmax(logits, dim=-1), dropout, self.training)
        out = (weights @ v).transpose(1, 2).reshape(B, N, H)
        related = torch.einsum("bhij,bijp->bihp", weights, pair.to(weights.dtype))
        return self.proj(out) + self.pair_out(related.reshape(B, N, -1))
