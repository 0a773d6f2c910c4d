"""Typed stage documents: what one stage writes as JSON and another reads back.

A stage's summary file is a pydantic model owned by the module that writes it; readers call
its :meth:`StageDocument.read` and use attributes, never string keys, so a renamed or missing
field is an error where the file is read, not a ``KeyError`` three stages later (atomate2's
task documents and quacc's schemas do the same).
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import ValidationError

from tasks.core.atomic import atomic_write
from tasks.core.config import StrictModel


class DocumentError(ValueError):
    """A stage document that cannot be read as its kind."""


class StageDocument(StrictModel):
    """A JSON document of a stage's output (unknown fields are refused when read)."""

    def write(self, path: str | Path, keep_identical: bool = False) -> Path:
        """Write the document atomically as indented JSON; returns ``path``.

        With ``keep_identical`` a file that already holds the same document is left untouched
        (its modification time too), so a resumed run rewrites nothing it finished.
        """
        text = self.model_dump_json(indent=2)
        return atomic_write(path, lambda tmp: tmp.write_text(text), keep_identical)

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """Read a document written by :meth:`write`.

        Raises
        ------
        DocumentError
            The file is not a valid document of this kind (e.g. written by another version
            of the pipeline); the message names the file and the offending keys.
        """
        try:
            return cls.model_validate_json(Path(path).read_text())
        except ValidationError as err:
            keys = ", ".join(".".join(str(p) for p in e["loc"]) or "<root>" for e in err.errors())
            raise DocumentError(
                f"{path} is not a {cls.__name__} this version of the pipeline reads "
                f"(keys: {keys}); rerun the stage that wrote it"
            ) from None
