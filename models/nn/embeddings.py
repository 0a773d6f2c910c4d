"""Fixed sinusoidal embeddings (for times and token positions) and the timestep MLP."""

from __future__ import annotations

import math

import torch
from torch import nn

from models.nn.mlp import MLP


def sinusoidal_embedding(x: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal features of a real-valued tensor.

    Parameters
    ----------
    x
        Any shape ``[...]`` (times, positions); values are used as given.
    dim
        Output feature size (even or odd; an odd size gets one zero column).
    max_period
        Longest wavelength of the frequency ladder.

    Returns
    -------
    torch.Tensor
        ``[..., dim]`` float tensor ``[cos(x f_i), sin(x f_i)]`` with
        ``f_i = max_period^(-i / half)``.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half
    )
    args = x.float().unsqueeze(-1) * freqs
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[..., :1])], dim=-1)
    return emb


def sinusoidal_positions(n: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed position embedding ``[n, dim]`` for token positions ``0..n-1``."""
    return sinusoidal_embedding(torch.arange(n, device=device, dtype=torch.float32), dim)


class TimestepEmbedder(nn.Module):
    """Embed a flow time ``t ∈ [0, 1]`` into ``hidden`` features.

    The time is scaled by ``scale`` (default 1000, so the sinusoid ladder resolves small
    differences in t), embedded sinusoidally and passed through a two-layer SiLU MLP.

    Parameters
    ----------
    hidden
        Output size (the DiT hidden size).
    freq_dim
        Size of the sinusoidal feature vector fed to the MLP.
    scale
        Multiplier applied to ``t`` before the sinusoidal features.
    """

    def __init__(self, hidden: int, freq_dim: int = 256, scale: float = 1000.0) -> None:
        super().__init__()
        self.freq_dim = freq_dim
        self.scale = scale
        self.mlp = MLP(freq_dim, hidden, hidden)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t``: ``[B]`` times → ``[B, hidden]``."""
        return self.mlp(sinusoidal_embedding(t * self.scale, self.freq_dim))
