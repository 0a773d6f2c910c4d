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
import shutil
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
        k-points per Å⁻³ of reciprocal volume (``reciprocal_density``; ``MPRelaxSet`` uses
        64); ``None`` keeps the default.
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


#: Where Debian's ``cp2k-data`` package puts CP2K's basis sets and pseudopotentials.
DEBIAN_CP2K_DATA = Path("/usr/share/cp2k")


class Cp2kSettings(StrictModel):
    """How each candidate is computed with CP2K (PBE, GTH pseudopotentials, no +U).

    Defaults come from ``benchmarks/cp2k_settings.py`` (energy convergence against time on
    MP-20 crystals: ``benchmarks/results/cp2k_settings.md``).

    Attributes
    ----------
    code
        Always ``"cp2k"``: tells a calculation's recorded settings from VASP's.
    calculation
        ``static``: one SCF at the given (MLIP-relaxed) geometry; ``relax``: cell and
        positions relaxed (CP2K ``CELL_OPT``).
    cutoff_ry, rel_cutoff_ry
        Plane-wave cutoff of the finest grid and the relative cutoff (Ry). 400 Ry is within
        0.1 meV/atom of 500 for CaI2 and PdAuO2, 16 for Ca(AlGa)2
        (``benchmarks/results/cp2k_settings.md``).
    kpoints_density
        k-points per Å⁻³ of reciprocal volume (``reciprocal_density``, as ``MPRelaxSet``'s
        64: within 0.3 meV/atom of 100 for CaI2 and PdAuO2, 10 for the metal Ca(AlGa)2; 32
        is 2–5 meV/atom off). CP2K's own k-point symmetry
        stays off (it crashes Debian's build): a Γ-centred mesh is reduced by symmetry in
        Python and given as an explicit weighted list, any other is the full mesh.
    electronic_temperature_k
        Fermi-Dirac smearing (K).
    max_scf, eps_scf
        SCF iterations (diagonalization with Broyden mixing) and their convergence
        threshold.
    mixing_alpha, mixing_beta, mixing_nbuffer
        Broyden density mixing: the fraction of the new density, the Kerker damping
        wavevector (bohr⁻¹) and the history length; pymatgen's 0.05 / 0.01 / 10 by default
        (the textbook metal setting 0.2 / 1.5 / 8 converged neither Cu3Ni nor CoNi2Sn any
        better). They decide how fast the SCF converges, not what it converges to
        (custodian changes them when an SCF does not converge), so they are placement,
        outside the settings hash.
    eps_default, eps_pgf_orb
        CP2K's integral and Gaussian-overlap screening. atomate2's 1e-12 / 1e-16 keep far
        more periodic images than k-point runs need: on FeNi3 1e-10 / 1e-6 gave the same
        SCF energies to 1e-7 Ha at a quarter of the time per SCF step.
    basis, basis_file, potential, potential_file
        Basis set and pseudopotential names and the CP2K data files that hold them.
    spin
        ``auto``: spin-polarized from a ferromagnetic guess (2 μB on each magnetic atom)
        when the crystal holds an element Materials Project starts with a moment of 1 μB or
        more (V, Cr, Mn, Fe, Ni, Mo, W, Ce, Eu) or Co, and for solid oxygen (triplet O2);
        closed shell otherwise; ``on`` / ``off``: always / never.
    cp2k_cmd
        Command that runs CP2K (``-i cp2k.inp`` is appended by custodian).
    data_dir
        CP2K's data folder (basis and potential files), exported as ``CP2K_DATA_DIR``.
    cores, threads
        Per calculation: the SLURM task count (``--ntasks``; ``cp2k_cmd`` holds the MPI
        launcher that uses it, e.g. ``srun cp2k.psmp``) and OpenMP threads. Local runs start
        one process per calculation.
    max_errors, poll_s
        Custodian's corrections limit and polling interval.
    """

    code: Literal["cp2k"] = "cp2k"
    calculation: Literal["static", "relax"] = "static"
    cutoff_ry: float = Field(default=400.0, gt=0)
    rel_cutoff_ry: float = Field(default=50.0, gt=0)
    kpoints_density: int = Field(default=64, gt=0)
    electronic_temperature_k: float = Field(default=300.0, gt=0)
    max_scf: int = Field(default=100, gt=0)
    eps_scf: float = Field(default=1e-6, gt=0)
    eps_default: float = Field(default=1e-10, gt=0)
    eps_pgf_orb: float = Field(default=1e-6, gt=0)
    basis: str = "DZVP-MOLOPT-SR-GTH"
    basis_file: str = "BASIS_MOLOPT"
    potential: str = "GTH-PBE"
    potential_file: str = "GTH_POTENTIALS"
    spin: Literal["auto", "on", "off"] = "auto"
    cp2k_cmd: Annotated[str, Placement] = "cp2k.psmp"
    data_dir: Annotated[Path, Placement] = DEBIAN_CP2K_DATA
    cores: Annotated[int, Placement] = Field(default=1, gt=0)
    threads: Annotated[int, Placement] = Field(default=1, gt=0)
    max_errors: Annotated[int, Placement] = Field(default=3, ge=0)
    poll_s: Annotated[float, Placement] = Field(default=2.0, gt=0)
    mixing_alpha: Annotated[float, Placement] = Field(default=0.05, gt=0, le=1)
    mixing_beta: Annotated[float, Placement] = Field(default=0.01, gt=0)
    mixing_nbuffer: Annotated[int, Placement] = Field(default=10, gt=0)

    def label(self) -> str:
        """What the energies are, for every output and report that shows them."""
        basis = self.basis.removesuffix("-GTH")
        return (
            f"CP2K PBE (GTH, {basis}), no +U, {self.calculation}; "
            "hull of recomputed competing phases"
        )


def cp2k_problem(settings: Cp2kSettings, command_needed: bool = True) -> str:
    """Why CP2K cannot run here ("" when its command and data files are present; only the
    data files when ``command_needed`` is false, e.g. to place calculations made elsewhere)."""
    command = settings.cp2k_cmd.split()[0]
    if command_needed and shutil.which(command) is None:
        return (
            f"CP2K command {command!r} not found: install Debian's cp2k and cp2k-data "
            "(`make setup` does as root; otherwise `apt-get install cp2k cp2k-data`)"
        )
    for name in (settings.basis_file, settings.potential_file):
        if not (settings.data_dir / name).is_file():
            return f"CP2K data file {settings.data_dir / name} not found (install cp2k-data)"
    return ""


#: What one calculation computes: VASP (atomate2 MP makers) or CP2K.
CalcSettings = DftSettings | Cp2kSettings


def calc_settings(data: dict[str, Any]) -> CalcSettings:
    """A calculation's recorded settings as their model (``code: cp2k`` marks CP2K's)."""
    if data.get("code") == "cp2k":
        return Cp2kSettings.model_validate(data)
    return DftSettings.model_validate(data)


def settings_hash(settings: CalcSettings) -> str:
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


class Cp2kStageConfig(StrictModel):
    """Where CP2K calculations run and where their competing phases are cached.

    Attributes
    ----------
    run_on
        ``local``: ``workers`` CP2K processes on this machine (one per core by default);
        ``slurm``: the same array batches as the VASP path (``slurm`` settings).
    workers
        Local processes at once (default: the machine's cores divided by ``threads``).
    references
        A DFT work directory shared by every run: the recomputed competing phases, each
        computed once per settings (calculation ids are structure and settings hashes).
    max_attempts
        Run here, a failed calculation is tried again by later runs up to this many times.
    wall_time_s
        Run here, a calculation still running after this many seconds is stopped and
        recorded as failed with that reason, as SLURM's time limit would (none by default).
    """

    run_on: Literal["local", "slurm"] = "local"
    workers: Annotated[int | None, Placement] = Field(default=None, gt=0)
    max_attempts: Annotated[int, Placement] = Field(default=2, gt=0)
    references: Annotated[Path, Placement] = REPO_ROOT / "data" / "cache" / "cp2k-references"
    wall_time_s: Annotated[float | None, Placement] = Field(default=None, gt=0)


class DftStageConfig(StrictModel):
    """The DFT stage: how calculations run and how results are judged."""

    mode: Literal["standin", "slurm", "cp2k", "skip"] = Field(
        default="standin",
        description=(
            "standin: local MLIP-driven VASP double (not DFT); slurm: VASP on a cluster; "
            "cp2k: CP2K PBE here or on the cluster, on a hull of recomputed competing phases"
        ),
    )
    dft: DftSettings = Field(default_factory=DftSettings)
    cp2k: Cp2kSettings = Field(default_factory=Cp2kSettings)
    cp2k_run: Annotated[Cp2kStageConfig, Placement] = Field(default_factory=Cp2kStageConfig)
    slurm: Annotated[SlurmSettings, Placement] = Field(default_factory=SlurmSettings)
    hull: DftHullConfig = Field(default_factory=DftHullConfig)
    poll_s: Annotated[float, Placement] = Field(default=5.0, gt=0)
    timeout_s: Annotated[float | None, Placement] = Field(default=None, gt=0)

    def describe(self) -> str:
        """What the stage's energies and hull are, for reports."""
        if self.mode == "cp2k":
            return self.cp2k.label()
        if self.mode == "standin":
            return "the local stand-in: CHGNet driving a VASP test double, not DFT"
        return (
            "VASP PBE(+U) with atomate2's MPRelaxSet, MP2020 corrections; hull of "
            "Materials Project entries"
        )
