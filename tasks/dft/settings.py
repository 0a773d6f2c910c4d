"""Settings of the DFT stage: what each calculation computes, and how a batch is submitted.

:class:`DftSettings` fields that only change how a calculation runs (MPI ranks, custodian's
error budget, wall time) are :data:`tasks.core.config.Placement`, so they stay out of
:func:`settings_hash` and changing them never starts a second calculation of a crystal.

:class:`SlurmSettings` values are written into a job script's ``#SBATCH`` header, so each is
validated: identifiers and sizes must match a strict pattern, directives are single lines,
environment names are shell identifiers (values are quoted when rendered).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from tasks.core.config import Placement, StrictModel, config_hash
from tasks.core.paths import REPO_ROOT

#: atomate2's default custodian handlers for VASP jobs, by class name. ``VaspErrorHandler``
#: carries the tetrahedron → Gaussian (SIGMA 0.05) smearing fallback.
DEFAULT_HANDLERS: tuple[str, ...] = (
    "VaspErrorHandler",
    "MeshSymmetryErrorHandler",
    "UnconvergedErrorHandler",
    "NonConvergingErrorHandler",
    "PotimErrorHandler",
    "PositiveEnergyErrorHandler",
    "FrozenJobErrorHandler",
    "StdErrHandler",
    "LargeSigmaHandler",
    "IncorrectSmearingHandler",
    "KspacingMetalHandler",
)

DEFAULT_TEMPLATE = REPO_ROOT / "infra" / "slurm" / "dft_array.sbatch"

#: SLURM names (partitions, accounts, QOS): letters, digits and ``_ . -``.
_SLURM_NAME = r"^[A-Za-z0-9_.-]+$"
#: Memory sizes: a number with an optional K/M/G/T unit.
_SLURM_MEM = r"^\d+[KMGT]?$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class DftSettings(StrictModel):
    """How each candidate is computed.

    Attributes
    ----------
    vasp_cmd
        Command that runs VASP in the calculation directory (environment variables are
        expanded on the compute node, e.g. ``srun -n $SLURM_NTASKS vasp_std``).
    vasp_gamma_cmd
        Command for Γ-only k-meshes; defaults to ``vasp_cmd``.
    cores
        MPI ranks per calculation (the SLURM job's ``--ntasks``).
    incar_updates
        INCAR settings applied on top of ``MPRelaxSet`` (``None`` removes a key).
    kpoints_density
        k-points per reciprocal atom (``MPRelaxSet`` uses 64); ``None`` keeps the default.
    double_relax, static
        Relax twice (as MP does) and/or finish with an ``MPStaticSet`` static.
    potcar_spec
        Write ``POTCAR.spec`` (symbols only) instead of ``POTCAR``: for dry runs and tests
        on machines without the licensed pseudopotentials.
    handlers
        Custodian VASP error-handler class names.
    max_errors
        Custodian's limit on corrections per calculation.
    wall_time_s
        Seconds after which custodian's ``WalltimeHandler`` stops VASP cleanly.
    poll_s
        Seconds between custodian's checks on the running VASP process (custodian's 10 s
        default; the local stand-in, done in seconds, polls every second). A finished job
        waits up to this long before custodian collects it.
    """

    vasp_cmd: str = "vasp_std"
    vasp_gamma_cmd: str | None = None
    cores: Annotated[int, Placement] = Field(default=1, gt=0)
    incar_updates: dict[str, Any] = Field(default_factory=dict)
    kpoints_density: int | None = Field(default=None, gt=0)
    double_relax: bool = False
    static: bool = False
    potcar_spec: bool = False
    handlers: tuple[str, ...] = DEFAULT_HANDLERS
    max_errors: Annotated[int, Placement] = Field(default=5, ge=0)
    wall_time_s: Annotated[int | None, Placement] = Field(default=None, gt=0)
    poll_s: Annotated[float, Placement] = Field(default=10.0, gt=0)

    @field_validator("handlers")
    @classmethod
    def _known_handlers(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if set(names) <= set(DEFAULT_HANDLERS):
            return names  # checked by a test; custodian's handlers take 5 s to import
        from custodian.vasp import handlers as vasp_handlers

        unknown = [n for n in names if not hasattr(vasp_handlers, n)]
        if unknown:
            raise ValueError(f"unknown custodian VASP handlers: {unknown}")
        return names


def settings_hash(settings: DftSettings) -> str:
    """Hash of what a calculation computes (placement-only fields excluded)."""
    return config_hash(settings)


class SlurmSettings(StrictModel):
    """How a batch is submitted to SLURM (rendered into ``infra/slurm/dft_array.sbatch``).

    Attributes
    ----------
    partition, account, qos
        Passed as ``#SBATCH`` directives when set (letters, digits, ``_ . -``).
    walltime
        Per-candidate time limit (``HH:MM:SS``).
    cpus_per_task, mem
        Resources per MPI rank / per node (``mem`` e.g. ``"32G"``).
    max_parallel
        Run at most this many array tasks at once (``--array=...%N``).
    extra_directives
        More ``#SBATCH`` lines, without the prefix (``["--constraint=skylake"]``); each must
        start with ``--`` and be one line.
    setup_commands
        Shell lines run before the flow (``module load vasp/6.4``): trusted site
        configuration, one command per entry.
    environment
        Variables exported in the job (e.g. ``PMG_VASP_PSP_DIR``); values are quoted.
    python
        Interpreter on the compute nodes; default: the one submitting.
    template
        The sbatch template.
    """

    partition: str | None = Field(default=None, pattern=_SLURM_NAME)
    account: str | None = Field(default=None, pattern=_SLURM_NAME)
    qos: str | None = Field(default=None, pattern=_SLURM_NAME)
    walltime: str = Field(default="24:00:00", pattern=r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
    cpus_per_task: int = Field(default=1, gt=0)
    mem: str | None = Field(default=None, pattern=_SLURM_MEM)
    max_parallel: int | None = Field(default=None, gt=0)
    extra_directives: list[str] = Field(default_factory=list)
    setup_commands: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    python: str | None = None
    template: Path = DEFAULT_TEMPLATE

    @field_validator("extra_directives")
    @classmethod
    def _one_line_directives(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith("--") or any(c in value for c in "\r\n\0"):
                raise ValueError(
                    f"an sbatch directive must be one line starting with --: {value!r}"
                )
        return values

    @field_validator("setup_commands", "python")
    @classmethod
    def _single_lines(cls, values: Any) -> Any:
        for value in values if isinstance(values, list) else [values]:
            if value is not None and any(c in value for c in "\r\n\0"):
                raise ValueError(f"must be a single line: {value!r}")
        return values

    @field_validator("environment")
    @classmethod
    def _environment_names(cls, values: dict[str, str]) -> dict[str, str]:
        for name, value in values.items():
            if not re.match(_ENV_NAME, name):
                raise ValueError(f"environment variable name {name!r} is not a shell identifier")
            if "\0" in value:
                raise ValueError(f"environment value of {name} holds a NUL byte")
        return values


class DftHullConfig(StrictModel):
    """Where reference entries come from and how candidates are classified.

    Attributes
    ----------
    entries_file
        JSON list of reference ``ComputedEntry``/``ComputedStructureEntry`` dicts (MP
        entries exported with ``monty.serialization.dumpfn``), used offline.
    mp_cache_dir
        Per-chemical-system cache of Materials Project entries (``<chemsys>.json``); filled
        from ``mp-api`` when online, read as is otherwise.
    earlier_results
        ``dft_results.json`` files of earlier rounds: their completed entries join the
        references (the closed loop).
    correct_references
        Apply MP2020 corrections to the references too (use for raw-energy entries).
    correct_candidates
        Apply MP2020 corrections to the computed candidates (real VASP energies). The
        local stand-in's energies are already on the MP2020 scale: it turns this off.
    """

    entries_file: Path | None = None
    mp_cache_dir: Path | None = None
    earlier_results: list[Path] = Field(default_factory=list)
    correct_references: bool = True
    correct_candidates: bool = True


class DftStageConfig(StrictModel):
    """The DFT stage: how calculations run and how results are judged."""

    mode: Literal["standin", "slurm", "skip"] = Field(
        default="standin",
        description="standin: local MLIP-driven VASP double (not DFT); slurm: real cluster",
    )
    dft: DftSettings = Field(default_factory=DftSettings)
    slurm: Annotated[SlurmSettings, Placement] = Field(default_factory=SlurmSettings)
    hull: DftHullConfig = Field(default_factory=DftHullConfig)
    poll_s: Annotated[float, Placement] = Field(default=5.0, gt=0)
    timeout_s: Annotated[float | None, Placement] = Field(default=None, gt=0)
