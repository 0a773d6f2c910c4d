"""TEST DOUBLE FOR VASP — this is NOT VASP and computes NO DFT energies.

VASP is licensed and absent from CI and from laptops, so the DFT tests and the embedded
default (``dft.mode: standin``) run the real atomate2 → custodian → TaskDoc path with this
module as the "VASP command" (``python -m tasks.dft.standin``; it lives in the package, as
atomate2 keeps its VASP double in ``utils/testing``). It behaves like a VASP run in the
current directory:

1. reads ``INCAR``, ``POSCAR``, ``KPOINTS`` and ``POTCAR.spec`` (or ``POTCAR`` titles);
2. relaxes the structure for a few steps with the CHGNet universal potential (positions,
   and the cell when ``ISIF >= 3``);
3. writes ``CONTCAR``, ``OSZICAR``, ``OUTCAR`` and a ``vasprun.xml`` that pymatgen's
   ``Vasprun`` and emmet's ``TaskDoc.from_directory`` parse, plus VASP-like stdout.

The energies are CHGNet's, not PBE's, and the Γ-point eigenvalues (a 2 eV gap above
E_F = 0) are made up: they only need to be plausible numbers. A real cluster run never
uses it: ``dft.mode: slurm`` runs the configured VASP command.

Failure injection (for failure, resubmission and error-handler tests):

``VASP_STANDIN_FAIL``
    A mode for every run, or ``formula:mode`` pairs for some reduced formulas only
    (``MgO:crash,LiF:tet``). Modes:
    ``crash``: exit with status 1 before writing any output;
    ``tet``: while ``ISMEAR == -5``, print VASP's tetrahedron error and exit (custodian's
    ``VaspErrorHandler`` then switches to Gaussian smearing, ``ISMEAR = 0, SIGMA = 0.05``);
    ``hang``: sleep for an hour (for scheduler cancellation / walltime tests).
``SYSTEM`` in INCAR
    A value containing ``standin:crash``, ``standin:tet`` or ``standin:hang`` has the same
    effect for that calculation only.
``VASP_STANDIN_STEPS``
    Maximum number of CHGNet optimizer steps (default 3).
"""

from __future__ import annotations

import os
import sys
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.vasp import Incar, Kpoints, Poscar

#: eV/Å³ → kBar (VASP's stress unit).
EV_PER_A3_TO_KBAR = 1602.1766208
TET_ERROR = (
    " -----------------------------------------------------------------------------\n"
    "|  Tetrahedron method fails (number of k-points < 4)                          |\n"
    "|  Please use a different ISMEAR, or use more k-points.                       |\n"
    " -----------------------------------------------------------------------------\n"
)
FAKE_VERSION = "6.4.3"


def requested_failure(incar: Incar, structure: Structure) -> str:
    """The failure mode asked for this run ("" for a normal run)."""
    system = str(incar.get("SYSTEM", ""))
    for mode in ("crash", "tet", "hang"):
        if f"standin:{mode}" in system:
            return mode
    spec = os.environ.get("VASP_STANDIN_FAIL", "")
    if ":" not in spec:
        return spec
    modes = dict(pair.split(":", 1) for pair in spec.split(",") if ":" in pair)
    return modes.get(structure.composition.reduced_formula, "")


def potcar_titles(directory: Path, structure: Structure) -> list[str]:
    """POTCAR titles per species, as VASP prints them in vasprun.xml."""
    spec = directory / "POTCAR.spec"
    if spec.exists():
        symbols = [s.strip() for s in spec.read_text().splitlines() if s.strip()]
    else:
        symbols = [
            line.split("=", 1)[1].split()[1]
            for line in (directory / "POTCAR").read_text().splitlines()
            if line.strip().startswith("TITEL")
        ]
    n_species = len(structure.composition.elements)
    if len(symbols) != n_species:
        raise SystemExit(f"POTCAR has {len(symbols)} entries for {n_species} species")
    return [f"PAW_PBE {s} 01Jan2000" for s in symbols]


def relax(structure: Structure, incar: Incar, steps: int) -> dict[str, list]:
    """Relax with CHGNet; return per-step energies, forces, stresses (kBar) and structures."""
    import torch
    from chgnet.model import StructOptimizer

    torch.set_num_threads(1)
    relax_cell = int(incar.get("ISIF", 2)) >= 3
    nsw = int(incar.get("NSW", 0))
    optimizer = StructOptimizer(use_device="cpu")
    result = optimizer.relax(
        structure,
        fmax=abs(float(incar.get("EDIFFG", -0.05))),
        steps=max(1, min(steps, nsw)) if nsw > 0 else 1,
        relax_cell=relax_cell,
        verbose=False,
    )
    traj: Any = result["trajectory"]
    species = [site.species_string for site in structure]
    structures = [
        Structure(Lattice(cell), species, pos, coords_are_cartesian=True)
        for cell, pos in zip(traj.cells, traj.atom_positions, strict=True)
    ]
    stresses = []
    for voigt in traj.stresses:
        xx, yy, zz, yz, xz, xy = -np.asarray(voigt) * EV_PER_A3_TO_KBAR
        stresses.append([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    if nsw == 0:
        structures, stresses = structures[:1], stresses[:1]
    return {
        "energies": [float(e) for e in traj.energies[: len(structures)]],
        "forces": [np.asarray(f) for f in traj.forces[: len(structures)]],
        "stresses": stresses,
        "structures": structures,
    }


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    elem = ET.SubElement(parent, tag, attrib)
    if text is not None:
        elem.text = text
    return elem


def _vasp_type(value: object) -> tuple[str, str]:
    if isinstance(value, bool):
        return "logical", "T" if value else "F"
    if isinstance(value, int):
        return "int", str(value)
    if isinstance(value, float):
        return "", f"{value:.8f}"
    return "string", str(value)


def _param(parent: ET.Element, name: str, value: object) -> None:
    if isinstance(value, list):
        vtype, _ = _vasp_type(value[0])
        attrib = {"name": name} | ({"type": vtype} if vtype else {})
        _sub(parent, "v", " ".join(_vasp_type(v)[1] for v in value), **attrib)
        return
    vtype, text = _vasp_type(value)
    _sub(parent, "i", text, name=name, **({"type": vtype} if vtype else {}))


def _varray(parent: ET.Element, name: str, rows: np.ndarray | list) -> None:
    arr = _sub(parent, "varray", name=name)
    for row in np.atleast_2d(np.asarray(rows, dtype=float)):
        _sub(arr, "v", " ".join(f"{x:16.8f}" for x in row))


def _structure(parent: ET.Element, structure: Structure, name: str | None = None) -> None:
    elem = _sub(parent, "structure", **({"name": name} if name else {}))
    crystal = _sub(elem, "crystal")
    _varray(crystal, "basis", structure.lattice.matrix)
    _sub(crystal, "i", f"{structure.volume:.8f}", name="volume")
    _varray(crystal, "rec_basis", structure.lattice.reciprocal_lattice_crystallographic.matrix)
    _varray(elem, "positions", structure.frac_coords)


def _energy(parent: ET.Element, energy: float) -> None:
    elem = _sub(parent, "energy")
    for name in ("e_fr_energy", "e_wo_entrp", "e_0_energy"):
        _sub(elem, "i", f"{energy:16.8f}", name=name)


def _electronic_structure(calc: ET.Element, n_electrons: float, ispin: int) -> None:
    """Fake Γ-point eigenvalues with a 2 eV gap above E_F = 0, and a DOS giving E_F.

    (atomate2 reads the previous run's band gap when it starts a second relaxation.)
    """
    nbands = int(n_electrons // 2 + 8)
    n_occ = int(np.ceil(n_electrons / 2))
    bands = [(e, 1.0) for e in np.linspace(-8.0, 0.0, n_occ)]
    bands += [(e, 0.0) for e in np.linspace(2.0, 10.0, nbands - n_occ)]
    eig = _sub(_sub(calc, "eigenvalues"), "array")
    for dim, name in ((1, "band"), (2, "kpoint"), (3, "spin")):
        _sub(eig, "dimension", name, dim=str(dim))
    _sub(eig, "field", "eigene")
    _sub(eig, "field", "occ")
    spins = _sub(eig, "set")
    for spin in range(1, ispin + 1):
        kpoint = _sub(_sub(spins, "set", comment=f"spin {spin}"), "set", comment="kpoint 1")
        for energy, occupation in bands:
            _sub(kpoint, "r", f"{energy:12.4f} {occupation:8.4f}")
    dos = _sub(calc, "dos")
    _sub(dos, "i", f"{0.0:12.8f}", name="efermi")
    total = _sub(_sub(dos, "total"), "array")
    for dim, name in ((1, "gridpoints"), (2, "spin")):
        _sub(total, "dimension", name, dim=str(dim))
    for name in ("energy", "total", "integrated"):
        _sub(total, "field", name)
    grid = _sub(total, "set")
    for spin in range(1, ispin + 1):
        block = _sub(grid, "set", comment=f"spin {spin}")
        for energy in np.linspace(-10.0, 10.0, 21):
            filled = sum(occ for e, occ in bands if e <= energy)
            _sub(block, "r", f"{energy:12.4f} {0.0:10.4f} {filled:10.4f}")


def parameters(incar: Incar, n_electrons: float) -> dict[str, Any]:
    """The <parameters> block: INCAR values over VASP defaults, PBE from the POTCARs."""
    nsw = int(incar.get("NSW", 0))
    params: dict[str, Any] = {
        "SYSTEM": "unknown system",
        "PREC": "normal",
        "ENCUT": 400.0,
        "ISPIN": 1,
        "NELM": 60,
        "NELMIN": 2,
        "EDIFF": 1e-4,
        "EDIFFG": 1e-3,
        "NSW": nsw,
        "IBRION": 2 if nsw > 0 else -1,
        "ISIF": 2,
        "POTIM": 0.5,
        "ISMEAR": 1,
        "SIGMA": 0.2,
        "ALGO": "Normal",
        "LORBIT": 0,
        "LDAU": False,
        "LASPH": False,
        "LHFCALC": False,
        "AEXX": 0.0,
        "HFSCREEN": 0.0,
        "LUSE_VDW": False,
        "GGA": "--",
        "METAGGA": "--",
        "NELECT": float(n_electrons),
        "NBANDS": int(n_electrons // 2 + 8),
        "LWAVE": False,
        "LCHARG": True,
    }
    for key, value in incar.items():
        if key in params and not isinstance(value, list):
            current: Any = params[key]
            params[key] = type(current)(value) if current is not None else value
        else:
            params[key] = value
    return params


def write_vasprun(
    path: Path,
    incar: Incar,
    kpoints: Kpoints | None,
    initial: Structure,
    titles: list[str],
    run: dict[str, list],
    n_electronic: int,
) -> None:
    """Write a vasprun.xml with the blocks pymatgen's Vasprun reads."""
    root = ET.Element("modeling")
    now = datetime.now(UTC)
    gen = _sub(root, "generator")
    for name, value in (
        ("program", "vasp"),
        ("version", FAKE_VERSION),
        ("subversion", "test double (CHGNet), not VASP"),
        ("platform", "LinuxGNU"),
        ("date", now.strftime("%Y %m %d")),
        ("time", now.strftime("%H:%M:%S")),
    ):
        _sub(gen, "i", value, name=name, type="string")

    incar_elem = _sub(root, "incar")
    for key, value in incar.items():
        _param(incar_elem, key, value)

    kp = _sub(root, "kpoints")
    style = kpoints.style.name if kpoints is not None else "Gamma"
    divisions = list(kpoints.kpts[0]) if kpoints is not None else [1, 1, 1]
    generation = _sub(kp, "generation", param=style)
    _sub(generation, "v", " ".join(str(int(d)) for d in divisions), name="divisions", type="int")
    _sub(generation, "v", "0.0 0.0 0.0", name="usershift")
    _varray(kp, "kpointlist", [[0.0, 0.0, 0.0]])
    _varray(kp, "weights", [[1.0]])

    species = [el.symbol for el in initial.composition.elements]
    zvals = {el: float(Element(el).Z) for el in species}
    n_electrons = sum(zvals[site.specie.symbol] for site in initial)
    par = _sub(root, "parameters")
    for key, value in parameters(incar, n_electrons).items():
        _param(par, key, value)

    info = _sub(root, "atominfo")
    _sub(info, "atoms", str(len(initial)))
    _sub(info, "types", str(len(species)))
    atoms = _sub(info, "array", name="atoms")
    _sub(atoms, "dimension", "ion", dim="1")
    _sub(atoms, "field", "element", type="string")
    _sub(atoms, "field", "atomtype", type="int")
    atom_set = _sub(atoms, "set")
    for site in initial:
        rc = _sub(atom_set, "rc")
        _sub(rc, "c", site.specie.symbol)
        _sub(rc, "c", str(species.index(site.specie.symbol) + 1))
    types = _sub(info, "array", name="atomtypes")
    _sub(types, "dimension", "type", dim="1")
    for field, ftype in (
        ("atomspertype", "int"),
        ("element", "string"),
        ("mass", ""),
        ("valence", ""),
        ("pseudopotential", "string"),
    ):
        _sub(types, "field", field, **({"type": ftype} if ftype else {}))
    type_set = _sub(types, "set")
    for symbol, title in zip(species, titles, strict=True):
        rc = _sub(type_set, "rc")
        for value in (
            str(int(initial.composition[symbol])),
            symbol,
            f"{float(Element(symbol).atomic_mass):.8f}",
            f"{zvals[symbol]:.8f}",
            title,
        ):
            _sub(rc, "c", value)

    _structure(root, initial, "initialpos")
    for energy, forces, stress, struct in zip(
        run["energies"], run["forces"], run["stresses"], run["structures"], strict=True
    ):
        calc = _sub(root, "calculation")
        for i in range(n_electronic):
            scstep = _sub(calc, "scstep")
            _energy(scstep, energy + 10.0 ** (-(i + 2)) * (n_electronic - 1 - i))
        _structure(calc, struct)
        _varray(calc, "forces", forces)
        _varray(calc, "stress", stress)
        _energy(calc, energy)
    _electronic_structure(calc, n_electrons, int(incar.get("ISPIN", 1)))
    _structure(root, run["structures"][-1], "finalpos")
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="ISO-8859-1", xml_declaration=True)


def write_oszicar(path: Path, run: dict[str, list], n_electronic: int) -> None:
    """OSZICAR: one DAV line per electronic step and an F= line per ionic step."""
    lines = []
    previous = 0.0
    for step, energy in enumerate(run["energies"], start=1):
        lines.append("       N       E                     dE             d eps       ncg")
        for i in range(n_electronic):
            e = energy + 10.0 ** (-(i + 2)) * (n_electronic - 1 - i)
            lines.append(f"DAV: {i + 1:3d}    {e: .12E}   {e - previous: .5E}   0.00000E+00    16")
            previous = e
        lines.append(f"{step:4d} F= {energy: .8E} E0= {energy: .8E}  d E ={energy - previous: .6E}")
    path.write_text("\n".join(lines) + "\n")


def write_outcar(
    path: Path, incar: Incar, run: dict[str, list], n_electrons: float, elapsed: float
) -> None:
    """OUTCAR with the header, parameter echo, energy and timing lines pymatgen's Outcar reads."""
    nbands = int(n_electrons // 2 + 8)
    nsw = int(incar.get("NSW", 0))
    lines = [
        f" vasp.{FAKE_VERSION} (build test-double, CHGNet stand-in, NOT VASP)",
        " running on    1 total cores",
        f"   k-points           NKPTS =      1   k-points in BZ     NKDIM =      1"
        f"   number of bands    NBANDS= {nbands:6d}",
        "   total plane-waves  NPLWV =   4096",
        "",
        f"   ISPIN  = {int(incar.get('ISPIN', 1)):6d}    spin polarized calculation?",
        f"   NSW    = {nsw:6d}    number of steps for IOM",
        f"   IBRION = {int(incar.get('IBRION', 2 if nsw > 0 else -1)):6d}    ionic relax",
        f"   ISIF   = {int(incar.get('ISIF', 2)):6d}    stress and relaxation",
        f"   ISMEAR = {int(incar.get('ISMEAR', 1)):6d};"
        f"   SIGMA  = {float(incar.get('SIGMA', 0.2)):6.2f}",
        "",
    ]
    for energy in run["energies"]:
        lines += [
            "  total drift:                                0.000000      0.000000      0.000000",
            "",
            "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
            "  ---------------------------------------------------",
            f"  free  energy   TOTEN  = {energy:18.8f} eV",
            "",
            f"  energy  without entropy= {energy:18.8f}  energy(sigma->0) = {energy:18.8f}",
            "",
        ]
    lines += [
        f" E-fermi : {0.0:10.4f}     XC(G=0):  -9.0000     alpha+bet : -1.0000",
        f" number of electron {n_electrons:15.7f} magnetization {0.0:15.7f}",
        "",
        " General timing and accounting informations for this job:",
        " ========================================================",
        "",
        f"                  Total CPU time used (sec): {elapsed:12.3f}",
        f"                            User time (sec): {elapsed:12.3f}",
        f"                          System time (sec): {0.0:12.3f}",
        f"                         Elapsed time (sec): {elapsed:12.3f}",
        "",
        f"                   Maximum memory used (kb): {400000.0:12.1f}",
        f"                   Average memory used (kb): {0.0:12.1f}",
        "",
    ]
    path.write_text("\n".join(lines) + "\n")


def main() -> int:
    """Run one stand-in "VASP" calculation in the current directory."""
    start = time.perf_counter()
    here = Path.cwd()
    incar = Incar.from_file(here / "INCAR")
    structure = Poscar.from_file(here / "POSCAR").structure
    kpoints = Kpoints.from_file(here / "KPOINTS") if (here / "KPOINTS").exists() else None
    print(f" running on    1 total cores (VASP stand-in {FAKE_VERSION}, test double)", flush=True)

    failure = requested_failure(incar, structure)
    if failure == "crash":
        print(" VASP stand-in: crash requested by failure injection", flush=True)
        return 1
    if failure == "tet" and int(incar.get("ISMEAR", 1)) == -5:
        print(TET_ERROR, flush=True)
        return 1
    if failure == "hang":
        time.sleep(3600)

    titles = potcar_titles(here, structure)
    run = relax(structure, incar, int(os.environ.get("VASP_STANDIN_STEPS", "3")))
    n_electronic = 3
    for step, energy in enumerate(run["energies"], start=1):
        print(f"{step:4d} F= {energy: .8E} E0= {energy: .8E}", flush=True)

    Poscar(run["structures"][-1]).write_file(here / "CONTCAR")
    write_oszicar(here / "OSZICAR", run, n_electronic)
    n_electrons = sum(float(site.specie.Z) for site in structure)
    write_outcar(here / "OUTCAR", incar, run, n_electrons, time.perf_counter() - start)
    write_vasprun(here / "vasprun.xml", incar, kpoints, structure, titles, run, n_electronic)
    print(" writing wavefunctions", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
