"""CP2K calculations through atomate2: inputs, element coverage and the jobflow flow.

CP2K runs offline wherever Debian's ``cp2k`` and ``cp2k-data`` packages are installed
(``make setup`` installs them when it can). Each calculation is one atomate2 CP2K job
(:class:`~atomate2.cp2k.jobs.core.StaticMaker`, or
:class:`~atomate2.cp2k.jobs.core.CellOptMaker` for ``calculation: relax``) under custodian
with atomate2's CP2K error handlers; its ``TaskDocument`` is collected like a VASP
``TaskDoc`` (:mod:`tasks.dft.collect`).

Basis sets and pseudopotentials are named exactly (``DZVP-MOLOPT-SR-GTH``, ``GTH-PBE``) and
read by CP2K from its own data files (``BASIS_MOLOPT``, ``GTH_POTENTIALS``), so no pymatgen
CP2K data directory is needed; :func:`missing_elements` reads those files to refuse, before
any calculation, a crystal with an element they do not cover (the lanthanides, most
actinides).

atomate2 0.1.5's CP2K ``CalculationInput`` reads every value of the parsed DFT parameters
as a string (``v.upper()``), but pymatgen 2026 parses numbers and sections (``Charge: 0``,
``cutoffs: {...}``), so every CP2K task document failed to build. :func:`use_fixed_parsing`
puts a subclass with that one check corrected where atomate2 looks the class up; it changes
nothing else (VASP's documents do not use it).
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from atomate2.cp2k.jobs.core import CellOptMaker, StaticMaker
from atomate2.cp2k.schemas import calculation as cp2k_calculation
from atomate2.cp2k.sets.base import Cp2kInputGenerator
from atomate2.cp2k.sets.core import CellOptSetGenerator, StaticSetGenerator
from jobflow import Flow
from monty.io import zopen
from pydantic import field_validator
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp.sets import MPRelaxSet

from tasks.dft.settings import Cp2kSettings

#: ``spin: auto`` polarizes a crystal holding one of these: the elements Materials Project
#: starts at 1 μB or more, and Co (0.6 there), a ferromagnet as a metal and magnetic in most
#: compounds.
MAGNETIC_ELEMENTS = frozenset(
    k for k, v in MPRelaxSet.CONFIG["INCAR"]["MAGMOM"].items() if k.isalpha() and v >= 1
) | {"Co"}
#: Initial moment (μB) of a magnetic atom. CP2K builds its atomic guess by moving electrons
#: between spins within the valence shell, so MP's 5 μB is impossible for Fe (d6, at most 4)
#: or Ni (d8, at most 2) and aborts; 2 is possible for every magnetic element and for O.
INITIAL_MOMENT = 2.0


class _CalculationInput(cp2k_calculation.CalculationInput):
    """atomate2's CP2K calculation input, reading non-string DFT parameters too."""

    @field_validator("dft", mode="before")
    @classmethod
    def cleanup_dft(cls, dft: dict[str, Any]) -> dict[str, Any]:
        """Mark spin-unrestricted runs ``UKS: True`` (only string values can say so)."""
        if any(isinstance(v, str) and v.upper() == "UKS" for v in dft.values()):
            dft["UKS"] = True
        return dft


def use_fixed_parsing() -> None:
    """Make atomate2's CP2K documents use :class:`_CalculationInput` (see the module)."""
    cp2k_calculation.CalculationInput = _CalculationInput  # type: ignore[misc]


class Cp2kUnavailableError(RuntimeError):
    """CP2K or its data files are not installed (the message says how to install them)."""


@cache
def _names_by_element(path: Path) -> dict[str, frozenset[str]]:
    """Every name (and alias) a CP2K basis or potential file gives each element."""
    names: dict[str, set[str]] = {}
    header = re.compile(r"^([A-Z][a-z]?)\s+(\S.*)$")
    for line in path.read_text(errors="replace").splitlines():
        match = header.match(line.strip())
        if match and not match.group(2)[0].isdigit():
            names.setdefault(match.group(1), set()).update(match.group(2).split())
    return {element: frozenset(found) for element, found in names.items()}


def covered_elements(settings: Cp2kSettings) -> frozenset[str]:
    """Elements with both the basis set and the pseudopotential the settings name."""
    basis = _names_by_element(settings.data_dir / settings.basis_file)
    potential = _names_by_element(settings.data_dir / settings.potential_file)
    return frozenset(
        element
        for element, names in basis.items()
        if settings.basis in names and settings.potential in potential.get(element, ())
    )


def missing_elements(structure: Structure, settings: Cp2kSettings) -> list[str]:
    """Elements of ``structure`` the settings' basis or potential file does not cover."""
    covered = covered_elements(settings)
    return sorted(el.symbol for el in structure.composition.elements if el.symbol not in covered)


def spin_polarized(structure: Structure, settings: Cp2kSettings) -> bool:
    """Whether the calculation is spin-polarized (see :class:`Cp2kSettings`'s ``spin``)."""
    if settings.spin != "auto":
        return settings.spin == "on"
    elements = {el.symbol for el in structure.composition.elements}
    return bool(elements & MAGNETIC_ELEMENTS) or elements == {"O"}  # O2 is a triplet


def cp2k_cell(structure: Structure, settings: Cp2kSettings) -> Structure:
    """The crystal as CP2K computes it: its Niggli-reduced cell, set up with a positive
    diagonal, with ferromagnetic initial moments as ``magmom`` when spin-polarized
    (:data:`INITIAL_MOMENT` on magnetic atoms, and on O in solid oxygen; 0 elsewhere).

    A strongly sheared cell (rhombohedral graphite's primitive one, 11.9° between its axes)
    makes CP2K's Kohn-Sham energy NaN at the first SCF step; its reduced cell computes. The
    reduction returns every orthogonal cell as (-a, -b, c), and CP2K, taking such a cell as
    orthorhombic, "converges" in two SCF steps with no electrons on its grid (9 of 93
    calculations, energies off by up to 1,400 eV/atom): the cell is therefore built again from
    its lengths and angles (a rotation; the mirror image for a left-handed reduced cell, the
    same energy), with the fractional coordinates kept.
    """
    reduced = structure.get_reduced_structure()
    matrix = Lattice.from_parameters(*reduced.lattice.parameters).matrix.copy()
    matrix[np.abs(matrix) < 1e-10] = 0.0  # cos(90°) rounding: orthogonal cells stay exact
    structure = Structure(
        Lattice(matrix),
        reduced.species,
        reduced.frac_coords,
        site_properties=reduced.site_properties or None,
    )
    moments = [0.0] * len(structure)
    if spin_polarized(structure, settings):
        oxygen = structure.composition.reduced_formula == "O2"
        moments = [
            INITIAL_MOMENT if site.specie.symbol in MAGNETIC_ELEMENTS or oxygen else 0.0
            for site in structure
        ]
    structure.add_site_property("magmom", moments)
    return structure


def input_generator(structure: Structure, settings: Cp2kSettings) -> Cp2kInputGenerator:
    """atomate2's input generator of the calculation, configured by the settings."""
    basis_and_potential: dict[str, Any] = {
        "basis_filenames": [settings.basis_file],
        "potential_filename": settings.potential_file,
    }
    for element in structure.symbol_set:
        basis_and_potential[element] = {
            "basis": settings.basis,
            "potential": settings.potential,
            "aux_basis": None,
        }
    user_input = {
        "basis_and_potential": basis_and_potential,
        "xc_functionals": ["PBE"],
        "cutoff": settings.cutoff_ry,
        "rel_cutoff": settings.rel_cutoff_ry,
        "eps_scf": settings.eps_scf,
        "eps_default": settings.eps_default,
        "eps_pgf_orb": settings.eps_pgf_orb,
        "spin_polarized": spin_polarized(structure, settings),
        "smearing": True,
        "ot": False,  # diagonalization always: OT cannot smear (a Γ-only mesh chose it)
        "override_default_params": {
            "FORCE_EVAL": {
                "DFT": {
                    "SCF": {
                        "MAX_SCF": settings.max_scf,
                        "SMEAR": {"ELEC_TEMP": settings.electronic_temperature_k},
                        "MIXING": {
                            "ALPHA": settings.mixing_alpha,
                            "BETA": settings.mixing_beta,
                            "NBUFFER": settings.mixing_nbuffer,
                        },
                    }
                }
            }
        },
    }
    kpoints = {"reciprocal_density": settings.kpoints_density}
    cls = StaticSetGenerator if settings.calculation == "static" else CellOptSetGenerator
    return cls(user_input_settings=user_input, user_kpoints_settings=kpoints)


def write_cp2k_inputs(structure: Structure, directory: str | Path, settings: Cp2kSettings) -> Path:
    """Write the calculation's ``cp2k.inp`` without running anything (a dry run)."""
    structure = cp2k_cell(structure, settings)
    with warnings.catch_warnings():  # pymatgen warns that it cannot validate exact names
        warnings.simplefilter("ignore")
        inputs = input_generator(structure, settings).get_input_set(structure)
    inputs.write_input(directory, make_dir=True, overwrite=True)
    return Path(directory)


def make_cp2k_flow(structure: Structure, settings: Cp2kSettings, name: str = "cp2k") -> Flow:
    """The atomate2 flow of one CP2K calculation.

    Parameters
    ----------
    structure
        The crystal (its geometry is used as is for ``static``, in its reduced cell).
    settings
        Calculation settings.
    name
        Flow name (the candidate id is a good choice).

    Returns
    -------
    Flow
        One CP2K job whose output is its ``TaskDocument``.
    """
    use_fixed_parsing()
    structure = cp2k_cell(structure, settings)
    maker_cls: Any = StaticMaker if settings.calculation == "static" else CellOptMaker
    maker = maker_cls(
        input_set_generator=input_generator(structure, settings),
        run_cp2k_kwargs={
            "cp2k_cmd": settings.cp2k_cmd,
            "max_errors": settings.max_errors,
            "custodian_kwargs": {"polling_time_step": settings.poll_s},
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = maker.make(structure)
    return Flow([job], output=job.output, name=name)


_DENSITY = re.compile(r"Electronic density on regular grids:\s+(\S+)\s+(\S+)")
LOST_ELECTRONS = 1e-3
"""Largest fraction of the electrons a run's density may miss on its grid."""


def density_problem(output: str | Path) -> str:
    """Why a finished CP2K run's energy means nothing, or ``""``: its final electronic
    density misses more than :data:`LOST_ELECTRONS` of the electrons.

    CP2K prints the density's integral and its deviation from the electron count
    (``Electronic density on regular grids: -N δ``); a cell it misreads "converges" in two
    SCF steps with no electrons on the grid (integral 0, δ = N) and a meaningless energy.

    Parameters
    ----------
    output
        CP2K's output file (``cp2k.out``, gzipped or not).
    """
    with zopen(Path(output), "rt") as handle:
        found = [m.groups() for line in handle if (m := _DENSITY.search(line))]
    if not found:
        return ""
    integral, deviation = (float(x) for x in found[-1])
    electrons = deviation - integral
    if abs(deviation) <= LOST_ELECTRONS * max(abs(electrons), 1.0):
        return ""
    return (
        f"CP2K's density holds {abs(integral):.4g} of the {electrons:.4g} electrons on its grid "
        f"({Path(output).name}): the energy is not the crystal's"
    )
