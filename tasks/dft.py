"""DFT relaxation workflows: atomate2 MP GGA makers (pymatgen ``MPRelaxSet`` inputs).

Each candidate becomes a jobflow :class:`~jobflow.Flow` built from atomate2's
:class:`~atomate2.vasp.jobs.mp.MPGGARelaxMaker` (optionally a double relaxation and an
``MPStaticSet`` static). VASP runs under custodian with atomate2's default error handlers;
custodian's ``VaspErrorHandler`` answers VASP's "Tetrahedron method fails" errors by
switching to Gaussian smearing with ``ISMEAR = 0, SIGMA = 0.05`` (the fallback used in the
papers). Everything else about a calculation comes from :class:`DftSettings`.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from atomate2.vasp.files import write_vasp_input_set
from atomate2.vasp.flows.core import DoubleRelaxMaker
from atomate2.vasp.jobs.base import BaseVaspMaker
from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPGGAStaticMaker
from custodian.vasp import handlers as vasp_handlers
from jobflow import Flow
from pydantic import Field, field_validator
from pymatgen.core import Structure
from pymatgen.io.vasp.sets import MPRelaxSet, MPStaticSet

from tasks.config import StrictModel, config_hash
from tasks.records import structure_from_json

logger = logging.getLogger(__name__)

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

#: Settings that change how a calculation runs, not what it computes; they are left out of
#: :func:`settings_hash`, so changing them does not create new calculations.
RUNTIME_ONLY_FIELDS = frozenset({"cores", "max_errors", "wall_time_s"})


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
    """

    vasp_cmd: str = "vasp_std"
    vasp_gamma_cmd: str | None = None
    cores: int = Field(default=1, gt=0)
    incar_updates: dict[str, Any] = Field(default_factory=dict)
    kpoints_density: int | None = Field(default=None, gt=0)
    double_relax: bool = False
    static: bool = False
    potcar_spec: bool = False
    handlers: tuple[str, ...] = DEFAULT_HANDLERS
    max_errors: int = Field(default=5, ge=0)
    wall_time_s: int | None = Field(default=None, gt=0)

    @field_validator("handlers")
    @classmethod
    def _known_handlers(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if not hasattr(vasp_handlers, n)]
        if unknown:
            raise ValueError(f"unknown custodian VASP handlers: {unknown}")
        return names


def settings_hash(settings: DftSettings) -> str:
    """Hash of the settings that define a calculation (runtime-only fields excluded)."""
    return config_hash(
        DftSettings.model_construct(
            **{k: v for k, v in settings.model_dump().items() if k not in RUNTIME_ONLY_FIELDS}
        )
    )


def _set_kwargs(settings: DftSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "force_gamma": True,
        "auto_metal_kpoints": True,
        "inherit_incar": False,
        "user_incar_settings": dict(settings.incar_updates),
    }
    if settings.kpoints_density is not None:
        kwargs["user_kpoints_settings"] = {"reciprocal_density": settings.kpoints_density}
    return kwargs


def relax_input_set(settings: DftSettings) -> MPRelaxSet:
    """The ``MPRelaxSet`` generator of the relaxation, as atomate2's MP maker configures it."""
    return MPRelaxSet(**_set_kwargs(settings))


def _run_vasp_kwargs(settings: DftSettings) -> dict[str, Any]:
    return {
        "vasp_cmd": settings.vasp_cmd,
        "vasp_gamma_cmd": settings.vasp_gamma_cmd or settings.vasp_cmd,
        "handlers": [getattr(vasp_handlers, name)() for name in settings.handlers],
        "max_errors": settings.max_errors,
        "wall_time": settings.wall_time_s,
    }


def _configure(maker: BaseVaspMaker, settings: DftSettings) -> BaseVaspMaker:
    maker.run_vasp_kwargs = _run_vasp_kwargs(settings)
    maker.write_input_set_kwargs = {"potcar_spec": settings.potcar_spec}
    return maker


def make_relax_flow(structure: Structure, settings: DftSettings, name: str = "dft relax") -> Flow:
    """Build the atomate2 flow for one candidate.

    Parameters
    ----------
    structure
        The candidate crystal.
    settings
        Calculation settings.
    name
        Flow name (the candidate id is a good choice).

    Returns
    -------
    Flow
        ``MPGGARelaxMaker`` job(s), optionally followed by a static; the flow's output is
        the last job's ``TaskDoc``.
    """
    relax_maker = _configure(
        MPGGARelaxMaker(input_set_generator=relax_input_set(settings)), settings
    )
    if settings.double_relax:
        relax = DoubleRelaxMaker.from_relax_maker(relax_maker).make(structure)
    else:
        relax = relax_maker.make(structure)
    jobs = [relax]
    if settings.static:
        static_maker = _configure(
            MPGGAStaticMaker(input_set_generator=MPStaticSet(**_set_kwargs(settings))), settings
        )
        static = static_maker.make(relax.output.structure, prev_dir=relax.output.dir_name)
        jobs.append(static)
    return Flow(jobs, output=jobs[-1].output, name=name)


def write_relax_inputs(structure: Structure, directory: str | Path, settings: DftSettings) -> Path:
    """Write the relaxation's VASP inputs without running anything (a dry run).

    Writes exactly what the flow's first job writes (INCAR, KPOINTS, POSCAR and POTCAR, or
    POTCAR.spec when ``settings.potcar_spec``), through atomate2's own input writer.

    Returns
    -------
    Path
        The directory holding the inputs.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_vasp_input_set(
        structure,
        relax_input_set(settings),
        directory=directory,
        potcar_spec=settings.potcar_spec,
        clean_prev=False,
    )
    logger.info("wrote VASP inputs for %s to %s", structure.formula, directory)
    return directory


@dataclass
class Candidate:
    """A crystal handed to the DFT stage; ``structure`` is ``None`` when the input was bad."""

    id: str
    structure: Structure | None
    reason: str = ""


def _parse_cif(candidate_id: str, text: str) -> Candidate:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception as err:  # a bad CIF is recorded, never fatal
        return Candidate(candidate_id, None, f"unreadable CIF: {type(err).__name__}: {err}")
    return _checked(candidate_id, structure)


def _checked(candidate_id: str, structure: Structure) -> Candidate:
    if len(structure) == 0:
        return Candidate(candidate_id, None, "empty structure")
    if not structure.is_ordered:
        return Candidate(candidate_id, None, "disordered structure (partial occupancies)")
    if structure.volume < 0.1:
        return Candidate(candidate_id, None, f"cell volume {structure.volume:.3g} Å³ < 0.1")
    if (
        len(structure) > 1
        and float(structure.distance_matrix[np.triu_indices(len(structure), 1)].min()) < 0.5
    ):
        return Candidate(candidate_id, None, "atoms closer than 0.5 Å")
    return Candidate(candidate_id, structure)


def read_candidates(path: str | Path, limit: int | None = None) -> list[Candidate]:
    """Read DFT candidates from a records parquet, a CSV with a ``cif`` column, or CIF files.

    Parameters
    ----------
    path
        ``*.parquet`` of crystal records (``id`` and ``structure`` columns, only ``ok``
        rows), ``*.csv[.gz]`` with ``cif`` and ``material_id``/``id`` columns, a single
        ``*.cif``, or a directory of ``*.cif`` files (the file stem is the id).
    limit
        Keep only the first ``limit`` candidates.

    Returns
    -------
    list[Candidate]
        One per input row; unreadable or physically bad inputs have ``structure=None`` and a
        reason.
    """
    path = Path(path)
    out: list[Candidate] = []
    if path.is_dir():
        out = [_parse_cif(p.stem, p.read_text()) for p in sorted(path.glob("*.cif"))]
    elif path.suffix == ".cif":
        out = [_parse_cif(path.stem, path.read_text())]
    elif path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        if "status" in frame:
            frame = frame[frame["status"] == "ok"]
        for cid, text in zip(frame["id"], frame["structure"], strict=True):
            try:
                out.append(_checked(str(cid), structure_from_json(text)))
            except Exception as err:
                out.append(Candidate(str(cid), None, f"bad structure JSON: {err}"))
    elif path.name.endswith((".csv", ".csv.gz")):
        frame = pd.read_csv(path)
        id_col = next((c for c in ("id", "material_id") if c in frame), None)
        ids = frame[id_col].astype(str) if id_col else frame.index.astype(str)
        out = [_parse_cif(cid, text) for cid, text in zip(ids, frame["cif"], strict=True)]
    else:
        raise ValueError(f"{path}: expected a .parquet, .csv[.gz], .cif file or a CIF directory")
    return out[:limit] if limit is not None else out
