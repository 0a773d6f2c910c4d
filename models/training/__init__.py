"""Shared training machinery: the trainer, EMA, the checkpoint format and their settings."""
