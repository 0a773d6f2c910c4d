"""Two-layer perceptron with a SiLU non-linearity."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """``Linear(in, hidden) → SiLU → Linear(hidden, out)``.

    Parameters
    ----------
    in_dim, hidden_dim, out_dim
        Input, hidden and output widths; ``out_dim`` defaults to ``in_dim``.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(hidden_dim, out_dim if out_dim is not None else in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the MLP to the last dimension of ``x``."""
        return self.fc2(self.act(self.fc1(x)))
