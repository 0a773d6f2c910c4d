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
from tasks.core.stability import StabilityRule

BATCHED_SYMMETRY_ERROR = (
    "fix_symmetry is not available with engine 'batched' (torch-sim 0.3.0 has no "
    "symmetry constraint); use engine 'ase' to keep the space group"
)


class MLIPConfig(StrictModel):
    """Which MLIP to use.

    Attributes
    ----------
    name
        Backend: ``chgnet`` (default, offline), ``sevennet`` (offline, its own package
        layer), ``mace`` or ``matgl``.
    model
        Model identifier or local path (see :mod:`tasks.mlip.backends`); ``None`` = the
        backend's default (CHGNet 0.3.0, SevenNet ``7net-0``; MACE and matgl need one).
    model_sha256
        The sha256 of a model file you have checked and approve to be unpickled. MACE
        ``.model`` files and matgl models are pickles (loading one runs code it names), so they
        are loaded only when their sha256 matches; CHGNet checkpoints load weights-only and
        need no approval.
    cache_dir
        Where named MACE / matgl models are looked up (default: the package's cache).
    device
        Torch device (``cpu``, ``cuda``).
    """

    name: Literal["chgnet", "sevennet", "mace", "matgl"] = "chgnet"
    model: str | None = None
    model_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    cache_dir: Annotated[Path | None, Placement] = None
    device: Annotated[str, Placement] = Field(default="cpu", pattern=r"^(cpu|cuda(:\d+)?|mps)$")


class RelaxConfig(StrictModel):
    """Settings of the MLIP relaxation (candidates and hull references share them).

    Attributes
    ----------
    fmax, steps
        FIRE convergence (eV/Å, on atoms and the Fréchet cell filter) and step limit;
        ``steps=0`` is a single point: the energy at the given geometry, no forces
        (``fmax`` NaN), computed in batches where the MLIP can (CHGNet).
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
    reference
        The competing phases: ``None`` (the default) is the papers' hull, every phase of
        MP-20 and MPTS-52 as the reference table holds them; otherwise a list of datasets
        (paths, or ``shared:<path>`` in the shared data folder). Never the training set alone:
        it lacks most competing phases (a hull of the 1,000-crystal sample has no Mn-O phase,
        and put MnO2 1.3 eV/atom below it).
    energies
        ``table``: reference energies from ``table`` (refused unless it was built with the
        same MLIP), phases missing from it computed the same way; ``single_point`` /
        ``relaxed``: every reference computed with the MLIP (cached on disk); ``auto``:
        ``table`` when a table built with this MLIP ships with the repository, otherwise
        ``single_point``.
    table
        The reference energy table (default: the shipped table of the hull's MLIP, CHGNet's
        when it has none).
    elemental_prototypes
        Add ASE elemental references for elements no reference phase covers (every such row
        says so).
    far_below
        Flag candidates more than this far below the hull (eV/atom): far below the known
        hull means a missing reference or a broken relaxation before a discovery.
    cache_dir
        Reference-energy cache (default ``<repo>/data/cache/mlip_hull``).
    """

    reference: list[str] | None = None
    energies: Literal["table", "single_point", "relaxed", "auto"] = "table"
    table: Path | None = None
    elemental_prototypes: bool = True
    far_below: float = Field(default=0.2, gt=0)
    cache_dir: Annotated[Path | None, Placement] = None

    @model_validator(mode="before")
    @classmethod
    def _old_single_point_flag(cls, data: Any) -> Any:
        """Accept ``single_point_references`` (before ``energies``): true = single points."""
        if isinstance(data, dict) and "single_point_references" in data:
            data = dict(data)
            flag = data.pop("single_point_references")
            data.setdefault("energies", "single_point" if flag else "relaxed")
        return data


class CommitteeMember(StrictModel):
    """A further MLIP of a committee: its model, its own hull, and how it meets a candidate.

    Attributes
    ----------
    mlip
        The member's MLIP.
    hull
        Its hull: which phases and how their energies come (default: the papers' hull with
        the shipped table of this MLIP, or its single points computed and cached when none
        ships). Energies of different members never share a hull.
    relax_steps
        ``0``: a single point at the geometry the first MLIP relaxed to; ``n``: up to ``n``
        FIRE steps from it with the member's own forces.
    """

    mlip: MLIPConfig
    hull: MLIPHullConfig = Field(default_factory=lambda: MLIPHullConfig(energies="auto"))
    relax_steps: int = Field(default=0, ge=0)


class CommitteeConfig(StrictModel):
    """MLIPs beyond the first that must agree before a crystal counts as (meta)stable.

    Attributes
    ----------
    members
        The further MLIPs, in order (the first MLIP, ``mlip``, relaxes the candidates).
    min_agree
        How many MLIPs (the first included) must call a crystal stable (metastable) for the
        committee to; ``None``: all of them. Any disagreement is flagged with every value.
    """

    members: list[CommitteeMember] = Field(default_factory=list)
    min_agree: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _check_min_agree(self) -> CommitteeConfig:
        if self.min_agree is not None and self.min_agree > len(self.members) + 1:
            raise ValueError(
                f"min_agree={self.min_agree} but the committee has {len(self.members) + 1} MLIPs"
            )
        return self

    def required(self) -> int:
        """Votes a crystal needs: ``min_agree``, or every MLIP."""
        return self.min_agree or len(self.members) + 1


class ScreenSettings(StrictModel):
    """One MLIP screen's settings, travelling together from the profile to the relaxation,
    the hull and the DFT stand-in's references: the MLIP, how candidates (and computed
    references) relax, which phases the hull holds and how it gets their energies, the
    stable / metastable rule, and the committee of further MLIPs (none by default)."""

    mlip: MLIPConfig = Field(default_factory=MLIPConfig)
    relax: RelaxConfig = Field(default_factory=RelaxConfig)
    hull: MLIPHullConfig = Field(default_factory=MLIPHullConfig)
    stability: StabilityRule = Field(default_factory=StabilityRule)
    committee: CommitteeConfig = Field(default_factory=CommitteeConfig)
