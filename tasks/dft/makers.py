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
from pathlib import Path
from typing import Any, cast

from atomate2.vasp.files import write_vasp_input_set
from atomate2.vasp.flows.core import DoubleRelaxMaker
from atomate2.vasp.jobs.base import BaseVaspMaker
from atomate2.vasp.jobs.mp import MPGGARelaxMaker, MPGGAStaticMaker
from custodian.vasp import handlers as vasp_handlers
from jobflow import Flow
from pymatgen.core import Structure
from pymatgen.io.vasp.sets import MPRelaxSet, MPStaticSet

from tasks.dft.settings import DftSettings

logger = logging.getLogger(__name__)


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
        "custodian_kwargs": {"polling_time_step": settings.poll_s},
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
    # atomate2 0.1.5 annotates its input generators with an older pymatgen base class and
    # its makers through the @job decorator, which mypy cannot see through: Any here.
    relax_maker: Any = _configure(
        MPGGARelaxMaker(input_set_generator=cast(Any, relax_input_set(settings))), settings
    )
    if settings.double_relax:
        relax = cast(Any, DoubleRelaxMaker).from_relax_maker(relax_maker).make(structure)
    else:
        relax = relax_maker.make(structure)
    jobs: list[Any] = [relax]
    if settings.static:
        static_maker: Any = _configure(
            MPGGAStaticMaker(input_set_generator=cast(Any, MPStaticSet(**_set_kwargs(settings)))),
            settings,
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
        cast(Any, relax_input_set(settings)),
        directory=directory,
        potcar_spec=settings.potcar_spec,
        clean_prev=False,
    )
    logger.info("wrote VASP inputs for %s to %s", structure.formula, directory)
    return directory
