"""Multi-head self-attention with a key-padding mask (``scaled_dot_product_attention``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def key_padding_bias(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Turn a ``[B, N]`` bool mask (True = real token) into an SDPA mask ``[B, 1, 1, N]``."""
    if mask is None:
        return None
    return mask[:, None, None, :].to(torch.bool)


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
    """

    def __init__(self, hidden: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over ``x`` ``[B, N, H]``; ``attn_mask`` from :func:`key_padding_bias`.

        Padded keys are never attended to; padded queries still produce (ignored) outputs,
        so every sample must contain at least one real token.
        """
        B, N, H = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).reshape(B, N, H))
