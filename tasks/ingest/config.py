"""Settings of ingestion: where a dataset comes from and how each crystal is analysed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from tasks.core.config import Placement, StrictModel


class DatasetSource(StrictModel):
    """Where a dataset comes from.

    ``kind``:
    - ``csv``: a CSV (optionally gzipped) with a ``cif`` column and optional id column;
    - ``cif_dir``: a folder of ``*.cif`` files (the file stem is the id);
    - ``extxyz``: an extended-XYZ file (frame ``id`` info key, else the frame index);
    - ``canonical``: one of the canonical MP-20 / MPTS-52 splits (``name`` such as
      ``mp_20/train``), read from ``path`` if given, else downloaded and verified by sha256;
    - ``materials_project``: a Materials Project query through ``mp-api``.
    """

    kind: Literal["csv", "cif_dir", "extxyz", "canonical", "materials_project"] = "csv"
    path: Path | None = None
    name: str | None = None
    id_column: str = "material_id"
    limit: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_required(self) -> DatasetSource:
        if self.kind in ("csv", "cif_dir", "extxyz") and self.path is None:
            raise ValueError(f"source kind {self.kind!r} needs a 'path'")
        if self.kind == "canonical" and not self.name:
            raise ValueError("source kind 'canonical' needs a 'name' such as 'mp_20/train'")
        return self


class IngestConfig(StrictModel):
    """Settings of the ingestion stage (parsing, reduction and symmetry analysis)."""

    symprec: float = Field(default=0.1, gt=0, description="spglib/pymatgen symmetry tolerance (Å)")
    angle_tolerance: float = Field(default=5.0, gt=0, description="spglib angle tolerance (deg)")
    pyxtal_tol: float = Field(default=0.1, gt=0, description="pyxtal from_seed tolerance (Å)")
    primitive_tol: float = Field(
        default=0.01,
        gt=0,
        description="site tolerance (Å) of the primitive-cell search; pymatgen's default 0.25 "
        "merges distorted cells into smaller idealized ones (1.4% of MP-20 val)",
    )
    min_distance: float = Field(default=0.5, ge=0, description="reject atoms closer than this (Å)")
    max_atoms: int = Field(default=200, gt=0, description="reject primitive cells larger than this")
    n_workers: Annotated[int, Placement] = Field(
        default=0, ge=0, description="worker processes; 0 = all cores"
    )
    chunk_size: Annotated[int, Placement] = Field(default=64, gt=0)
    cache_dir: Annotated[Path | None, Placement] = Field(
        default=None, description="analysis cache; default data/cache"
    )
    plots: bool = True
