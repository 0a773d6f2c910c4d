"""Shared neural-network building blocks: embeddings, attention, DiT, Transformer, MLP."""

from models.nn.dit import DiT, DiTBlock, FinalAdaLN
from models.nn.embeddings import TimestepEmbedder, sinusoidal_embedding, sinusoidal_positions
from models.nn.mlp import MLP
from models.nn.transformer import TransformerEncoder

__all__ = [
    "MLP",
    "DiT",
    "DiTBlock",
    "FinalAdaLN",
    "TimestepEmbedder",
    "TransformerEncoder",
    "sinusoidal_embedding",
    "sinusoidal_positions",
]
