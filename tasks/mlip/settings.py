"""Settings of the MLIP screen: which potential, and how candidates are relaxed.

What a relaxation computes (``fmax``, ``steps``, the guards, ``engine``) is kept apart
from where and how fast it runs (worker counts, chunk size, scheduler, threads, time
budget), which is declared :data:`tasks.core.config.Placement` and so never enters a
cache key: the same candidates relaxed on a laptop or a cluster share their results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tasks.core.config import Placement, StrictModel

BATCHED_SYMMETRY_ERROR = (
    "fix_symmetry is not available with engine 'batched' (torch-sim 0.3.0 has no "
    "symmetry constraint); use engine 'ase' to keep the space group"
)


class MLIPConfig(StrictModel):
    """Which MLIP to use.

    Attributes
    ----------
    name
        Backend: ``chgnet`` (default, offline), ``mace`` or ``matgl``.
    model
        Model identifier or local path (see :mod:`tasks.mlip.backends`); ``None`` = the
        backend's default (CHGNet 0.3.0; MACE and matgl need one).
    cache_dir
        Where named MACE / matgl models are looked up (default: the package's cache).
    device
        Torch device (``cpu``, ``cuda``).
    """

    name: Literal["chgnet", "mace", "matgl"] = "chgnet"
    model: str | None = None
    cache_dir: Annotated[Path | None, Placement] = None
    device: Annotated[str, Placement] = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")


class RelaxConfig(StrictModel):
    """Settings of the MLIP relaxation (candidates and hull references share them).

    Attributes
    ----------
    fmax, steps
        FIRE convergence (eV/Å, on atoms and the Fréchet cell filter) and step limit;
        ``steps=0`` is a single point (no relaxation).
    fix_symmetry, symprec
        Keep the initial space group (ASE ``FixSymmetry`` at ``symprec`` Å).
    min_volume_ratio, max_volume_ratio
        Stop as collapsed / exploded when V / V_initial leaves this range.
    min_distance
        Stop as overlapping when two atoms come closer than this (Å).
    engine
        ``ase``: one ASE FIRE loop per candidate (:mod:`tasks.mlip.ase_engine`);
        ``batched``: each chunk relaxed as one batch on the model (torch-sim, MACE only,
        the GPU path; :mod:`tasks.mlip.batched_engine`).
    time_budget_s
        Wall-clock budget per candidate, checked after every step (``None`` = unlimited);
        with ``batched``, counted from the start of the candidate's batch.
    chunk_size
        Candidates per worker task and per output file; with ``batched``, the batch size.
        A kill loses at most the chunks in flight.
    n_workers
        Local worker processes (0 = all cores) when no Dask cluster is given.
    scheduler
        Where chunks run without the pipeline's Dask cluster: ``serial`` (this process),
        ``process`` (a local process pool) or ``dask`` (a LocalCluster, or the scheduler at
        ``scheduler_address``). The old value ``batched`` means ``engine: batched`` in
        this process.
    torch_threads
        ``torch.set_num_threads`` in each worker (1 is fastest on shared CPUs).
    """

    fmax: float = Field(default=0.05, gt=0)
    steps: int = Field(default=300, ge=0)
    fix_symmetry: bool = False
    symprec: float = Field(default=0.01, gt=0)
    min_volume_ratio: float = Field(default=0.25, gt=0, lt=1)
    max_volume_ratio: float = Field(default=4.0, gt=1)
    min_distance: float = Field(default=0.5, ge=0)
    engine: Literal["ase", "batched"] = "ase"
    time_budget_s: Annotated[float | None, Placement] = Field(default=600.0, gt=0)
    chunk_size: Annotated[int, Placement] = Field(default=8, gt=0)
    n_workers: Annotated[int, Placement] = Field(default=0, ge=0)
    scheduler: Annotated[Literal["serial", "process", "dask"], Placement] = "process"
    scheduler_address: Annotated[str | None, Placement] = None
    torch_threads: Annotated[int, Placement] = Field(default=1, gt=0)

    @property
    def single_point(self) -> bool:
        """True when no relaxation is done (``steps == 0``)."""
        return self.steps == 0

    @model_validator(mode="before")
    @classmethod
    def _old_batched_scheduler(cls, data: Any) -> Any:
        """Accept ``scheduler: batched`` (before ``engine`` existed) as ``engine: batched``."""
        if isinstance(data, dict) and data.get("scheduler") == "batched":
            data = {**data, "scheduler": "serial"}
            if data.setdefault("engine", "batched") != "batched":
                raise ValueError("scheduler 'batched' contradicts engine 'ase'")
        return data

    @model_validator(mode="after")
    def _check_batched(self) -> RelaxConfig:
        if self.engine == "batched" and self.fix_symmetry:
            raise ValueError(BATCHED_SYMMETRY_ERROR)
        return self


class MLIPHullConfig(StrictModel):
    """Settings of the MLIP hull.

    Attributes
    ----------
    single_point_references
        Evaluate references without relaxing them (flagged in every output row).
    elemental_prototypes
        Add ASE elemental references for elements the reference set lacks as pure phases.
    cache_dir
        Reference-energy cache (default ``<repo>/data/cache/mlip_hull``).
    """

    single_point_references: bool = False
    elemental_prototypes: bool = True
    cache_dir: Annotated[Path | None, Placement] = None
