"""Matplotlib for files, not screens: the one place the plotting backend is chosen."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (every plot is a PNG file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
