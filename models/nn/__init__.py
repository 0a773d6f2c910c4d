"""Shared neural-network building blocks: embeddings, attention, DiT, Transformer, MLP."""
