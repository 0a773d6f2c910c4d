"""Atomic file writes: a crash never leaves half a file under the final name."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(
    path: str | Path, writer: Callable[[Path], object], keep_identical: bool = False
) -> Path:
    """Write ``path`` by calling ``writer(tmp_path)`` and renaming the result into place.

    Parameters
    ----------
    path
        Final location of the file.
    writer
        Callable that writes the complete file to the temporary path it is given.
    keep_identical
        Leave an existing file with the same bytes in place (for files a resumed run derives
        again from finished work: they keep their time stamps).

    Returns
    -------
    Path
        ``path``, now holding the complete file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        if keep_identical and path.is_file() and path.read_bytes() == tmp.read_bytes():
            return path
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json_atomic(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Atomically write ``obj`` as JSON (sorted keys, so diffs stay readable)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=True, default=str))
