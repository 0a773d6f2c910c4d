"""VASP inputs equal pymatgen's MPRelaxSet; settings, flows and candidate reading."""

from __future__ import annotations

from pathlib import Path

import pytest
from jobflow import Flow
from pymatgen.io.vasp import Incar, Kpoints
from pymatgen.io.vasp.sets import MPRelaxSet
from support.structures import diamond_si, rocksalt

from tasks.core.config import ConfigError, validate_config
from tasks.core.records import structure_to_json
from tasks.dft.makers import make_relax_flow, write_relax_inputs
from tasks.dft.settings import DftSettings, settings_hash
from tasks.dft.submit import read_candidates


def _inputs(directory: Path) -> tuple[Incar, Kpoints, list[str]]:
    return (
        Incar.from_file(directory / "INCAR"),
        Kpoints.from_file(directory / "KPOINTS"),
        (directory / "POTCAR.spec").read_text().split(),
    )


def test_nacl_inputs_equal_mprelaxset(tmp_path: Path) -> None:
    nacl = rocksalt(5.69, "Na", "Cl", primitive=True)
    ours = write_relax_inputs(nacl, tmp_path / "ours", DftSettings(potcar_spec=True))
    MPRelaxSet(nacl).write_input(tmp_path / "pymatgen", potcar_spec=True)
    incar, kpoints, potcars = _inputs(ours)
    ref_incar, ref_kpoints, ref_potcars = _inputs(tmp_path / "pymatgen")

    assert dict(incar) == dict(ref_incar)
    assert str(kpoints) == str(ref_kpoints)
    assert potcars == ref_potcars
    assert not (ours / "POTCAR").exists()
    # The values the papers' protocol fixes, spelled out.
    assert incar["ENCUT"] == 520
    assert incar["ISMEAR"] == -5
    assert kpoints.style == Kpoints.supported_modes.Gamma
    assert tuple(kpoints.kpts[0]) == (7, 7, 7)
    assert potcars == ["Na_pv", "Cl"]


def test_overrides_change_inputs_and_hash(tmp_path: Path) -> None:
    si = diamond_si()
    base = DftSettings(potcar_spec=True)
    custom = DftSettings(potcar_spec=True, incar_updates={"EDIFFG": -0.02}, kpoints_density=200)
    incar, kpoints, _ = _inputs(write_relax_inputs(si, tmp_path / "custom", custom))
    base_incar, base_kpoints, _ = _inputs(write_relax_inputs(si, tmp_path / "base", base))

    assert incar["EDIFFG"] == -0.02 and "EDIFFG" not in base_incar
    assert tuple(kpoints.kpts[0]) != tuple(base_kpoints.kpts[0])
    assert settings_hash(custom) != settings_hash(base)
    # How a calculation runs (cores, walltime) does not make it a different calculation.
    assert settings_hash(base.model_copy(update={"cores": 64, "wall_time_s": 3600})) == (
        settings_hash(base)
    )


def test_double_relax_and_static_flow() -> None:
    settings = DftSettings(double_relax=True, static=True, vasp_cmd="mpirun vasp_std")
    flow = make_relax_flow(rocksalt(5.69, "Na", "Cl", primitive=True), settings, name="cand-1")
    assert isinstance(flow, Flow) and flow.name == "cand-1"
    relax, static = flow.jobs
    assert isinstance(relax, Flow) and len(relax.jobs) == 2
    assert static.name == "MP GGA static"
    maker = static.maker
    assert maker.run_vasp_kwargs["vasp_cmd"] == "mpirun vasp_std"
    handlers = [type(h).__name__ for h in maker.run_vasp_kwargs["handlers"]]
    assert "VaspErrorHandler" in handlers  # carries the tetrahedron → SIGMA 0.05 fallback


def test_unknown_handler_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="NoSuchHandler"):
        validate_config({"handlers": ["NoSuchHandler"]}, DftSettings)


def test_read_candidates_records_bad_inputs(tmp_path: Path) -> None:
    folder = tmp_path / "cifs"
    folder.mkdir()
    rocksalt(5.69, "Na", "Cl", primitive=True).to(filename=str(folder / "good.cif"))
    (folder / "broken.cif").write_text("not a cif")
    squeezed = rocksalt(5.69, "Na", "Cl", primitive=True)
    squeezed.replace(1, "Cl", squeezed[0].frac_coords + 0.01)
    squeezed.to(filename=str(folder / "squeezed.cif"))

    found = {c.id: c for c in read_candidates(folder)}
    assert found["good"].structure is not None and found["good"].reason == ""
    assert found["broken"].structure is None and "malformed cif" in found["broken"].reason
    assert found["squeezed"].structure is None and "overlapping atoms" in found["squeezed"].reason


def test_read_candidates_from_records_parquet(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "id": ["a", "b"],
            "status": ["ok", "rejected"],
            "structure": [structure_to_json(diamond_si()), ""],
        }
    )
    frame.to_parquet(tmp_path / "records.parquet")
    good, refused = read_candidates(tmp_path / "records.parquet")  # rows in = rows out
    assert good.id == "a" and good.structure.composition.reduced_formula == "Si"
    assert refused.id == "b" and refused.structure is None
    assert refused.reason.startswith("record status rejected")


def test_write_inputs_command_is_a_dry_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    rocksalt(5.69, "Na", "Cl", primitive=True).to(filename=str(tmp_path / "nacl.cif"))
    result = CliRunner().invoke(
        app, ["dft", "write-inputs", str(tmp_path / "nacl.cif"), str(tmp_path / "inputs")]
    )
    assert result.exit_code == 0, result.output
    incar, kpoints, potcars = _inputs(tmp_path / "inputs")
    assert incar["ENCUT"] == 520 and tuple(kpoints.kpts[0]) == (7, 7, 7)
    assert potcars == ["Na_pv", "Cl"]


def test_the_default_handlers_are_custodians() -> None:
    """The settings accept the defaults without importing custodian: they must exist there."""
    from custodian.vasp import handlers as vasp_handlers

    from tasks.dft.settings import DEFAULT_HANDLERS

    assert all(hasattr(vasp_handlers, name) for name in DEFAULT_HANDLERS)
