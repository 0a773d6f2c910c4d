"""Registering calculations in a DFT work directory: one calculation per structure, one row
per candidate."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

from tasks.dft.settings import DftSettings
from tasks.dft.submit import SubmitReport, calc_statuses, register_calculations
from tasks.dft.workdir import Candidate, read_calc, read_rejected

NACL = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_the_same_structure_twice_is_one_calculation_and_two_rows(tmp_path) -> None:
    settings = DftSettings()
    report = SubmitReport()
    new = register_calculations(
        [Candidate("x", NACL), Candidate("y", NACL.copy())], tmp_path, settings, report
    )
    assert len(new) == 1 and read_calc(tmp_path, new[0]).candidate_id == "x"
    assert read_rejected(tmp_path) == report.rejected
    assert "candidate x" in report.rejected["y"]


def test_a_registered_calculation_keeps_its_candidate_on_a_later_call(tmp_path) -> None:
    """Registered but never started (e.g. by a collect-only run), the calculation stays x's:
    y, the same structure, is still the rejected one, whatever the order, and each
    candidate is in exactly one place."""
    settings = DftSettings()
    register_calculations([Candidate("x", NACL)], tmp_path, settings, SubmitReport())
    again = register_calculations(
        [Candidate("y", NACL), Candidate("x", NACL)], tmp_path, settings, SubmitReport()
    )
    (status,) = calc_statuses(tmp_path)
    assert again == [status.calc_id] and status.candidate_id == "x"
    assert set(read_rejected(tmp_path)) == {"y"}


def test_a_candidate_rejected_earlier_loses_its_rejection_once_it_owns_a_calculation(
    tmp_path,
) -> None:
    settings = DftSettings()
    register_calculations(
        [Candidate("x", None, "unreadable CIF")], tmp_path, settings, SubmitReport()
    )
    assert read_rejected(tmp_path) == {"x": "unreadable CIF"}
    register_calculations([Candidate("x", NACL)], tmp_path, settings, SubmitReport())
    assert read_rejected(tmp_path) == {}
