"""Typed stage documents: what one stage writes as JSON and another reads back.

A stage's summary file is a pydantic model owned by the module that writes it; readers call
its :meth:`StageDocument.read` and use attributes, never string keys, so a renamed or missing
field is an error where the file is read, not a ``KeyError`` three stages later (atomate2's
task documents and quacc's schemas do the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from tasks.core.atomic import write_text_atomic
from tasks.core.config import StrictModel


class StageDocument(StrictModel):
    """A JSON document of a stage's output (unknown fields are refused when read)."""

    def write(self, path: str | Path) -> Path:
        """Write the document atomically as indented JSON; returns ``path``."""
        return write_text_atomic(path, self.model_dump_json(indent=2))

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Read a document written by :meth:`write`."""
        return cls.model_validate_json(Path(path).read_text())
