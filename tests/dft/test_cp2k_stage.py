"""The CP2K DFT stage with real CP2K: candidates on a hull of competing phases recomputed
with their settings, resumed runs, SLURM, and the ``discovery dft cp2k`` command."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from support.cp2k import CHEAP, SILICON, stage_config, table_phase

from tasks.core.records import structure_from_json
from tasks.core.structure_io import write_structures
from tasks.dft.archive import export_completed, import_completed
from tasks.dft.cp2k import missing_elements
from tasks.dft.cp2k_stage import compute, run_cp2k_stage
from tasks.dft.settings import Cp2kStageConfig, DftStageConfig, cp2k_problem
from tasks.dft.workdir import Candidate, DftBatch, read_calc, read_state
from tasks.mlip.settings import RelaxConfig, ScreenSettings

pytestmark = pytest.mark.skipif(bool(cp2k_problem(CHEAP)), reason=cp2k_problem(CHEAP))


def test_a_reference_phase_lands_on_its_own_recomputed_hull(tmp_path) -> None:
    """Rock-salt NaCl (mp-22862) as a candidate: its competing phases (NaCl itself, Na and
    Cl2 ground states of the MLIP hull) are recomputed with its settings in the shared
    references directory, and it sits on that hull; a crystal with Ce is rejected."""
    nacl = table_phase("mp-22862")
    ceo2 = Structure(Lattice.cubic(5.41), ["Ce", "O", "O"], [[0, 0, 0], [0.25] * 3, [0.75] * 3])
    assert missing_elements(ceo2, CHEAP) == ["Ce"]
    candidates = write_structures(
        [("cand-NaCl", nacl), ("cand-CeO2", ceo2)], tmp_path / "candidates.parquet"
    )
    config = DftStageConfig(
        mode="cp2k",
        cp2k=CHEAP,
        cp2k_run=Cp2kStageConfig(references=tmp_path / "references", workers=2),
    )
    screen = ScreenSettings(relax=RelaxConfig(steps=0, scheduler="serial"))
    results = pd.read_parquet(run_cp2k_stage(candidates, tmp_path / "dft", config, screen))
    rows = results.set_index("id")
    assert rows.loc["cand-NaCl", "dft_status"] == "completed", rows.loc["cand-NaCl", "reason"]
    assert rows.loc["cand-NaCl", "e_hull_dft"] == pytest.approx(0.0, abs=1e-4)
    assert rows.loc["cand-CeO2", "dft_status"] == "rejected"
    assert "no DZVP-MOLOPT-SR-GTH basis" in rows.loc["cand-CeO2", "reason"]
    assert "Ce" in rows.loc["cand-CeO2", "reason"]
    phases = sorted(p.name for p in (tmp_path / "references" / "calcs").iterdir())
    assert len(phases) == 3  # NaCl, Na, Cl2: each once
    (batch,) = (tmp_path / "references" / "batches").glob("*.json")
    sizes = [
        len(structure_from_json(read_calc(tmp_path / "references", calc_id).structure))
        for calc_id in DftBatch.read(batch).calc_ids
    ]
    assert sizes == sorted(sizes) and len(set(sizes)) > 1  # smallest cells first
    again = pd.read_parquet(run_cp2k_stage(candidates, tmp_path / "dft2", config, screen))
    assert again.set_index("id").loc["cand-NaCl", "e_hull_dft"] == pytest.approx(
        rows.loc["cand-NaCl", "e_hull_dft"], abs=1e-9
    )
    assert sorted(p.name for p in (tmp_path / "references" / "calcs").iterdir()) == phases
    # the phases carried to another machine's references place the candidate, no CP2K run
    archive = tmp_path / "references.tar.xz"
    assert sorted(export_completed(tmp_path / "references", archive)) == phases
    assert sorted(import_completed(archive, tmp_path / "carried")) == phases
    assert import_completed(archive, tmp_path / "carried") == []  # kept, not replaced
    carried = config.model_copy(
        update={"cp2k_run": Cp2kStageConfig(references=tmp_path / "carried")}
    )
    placed = pd.read_parquet(
        run_cp2k_stage(candidates, tmp_path / "dft", carried, screen, start_new=False)
    )
    assert placed.set_index("id").loc["cand-NaCl", "e_hull_dft"] == pytest.approx(
        rows.loc["cand-NaCl", "e_hull_dft"], abs=1e-9
    )


def test_a_resumed_stage_places_earlier_candidates_before_computing_new_ones(tmp_path) -> None:
    """A run stopped after its candidates and before their phases: the next run computes
    those phases before its own new candidates, so it places them even if stopped again."""
    config = DftStageConfig(
        mode="cp2k",
        cp2k=CHEAP,
        cp2k_run=Cp2kStageConfig(references=tmp_path / "references", workers=1),
    )
    workdir = tmp_path / "dft"
    compute([Candidate("cand-Si", SILICON)], workdir, config)  # the first run, stopped here
    strained = SILICON.copy()
    strained.scale_lattice(SILICON.volume * 1.06)
    candidates = write_structures([("cand-Si-strained", strained)], tmp_path / "c.parquet")
    screen = ScreenSettings(relax=RelaxConfig(steps=0, scheduler="serial"))
    rows = pd.read_parquet(run_cp2k_stage(candidates, workdir, config, screen)).set_index("id")
    assert set(rows["dft_status"]) == {"completed"}, rows["reason"].to_dict()
    assert rows.loc["cand-Si-strained", "e_hull_dft"] > rows.loc["cand-Si", "e_hull_dft"]
    (phase,) = (tmp_path / "references" / "calcs").iterdir()  # Si's ground state, once
    (new,) = [c.name for c in (workdir / "calcs").iterdir()
              if read_calc(workdir, c.name).candidate_id == "cand-Si-strained"]  # fmt: skip
    phase_done, new_done = read_state(phase.parent.parent, phase.name), read_state(workdir, new)
    assert phase_done is not None and new_done is not None
    assert phase_done.updated < new_done.updated  # the old order computed the phase last


def test_cp2k_runs_as_the_same_slurm_array_as_vasp(tmp_path, slurm) -> None:
    """``cp2k_run.run_on: slurm``: the candidate and its competing phase run as array tasks
    of the local SLURM cluster; elemental Si (mp-149) lands on its recomputed hull."""
    candidates = write_structures([("cand-Si", table_phase("mp-149"))], tmp_path / "c.parquet")
    config = DftStageConfig(
        mode="cp2k",
        cp2k=CHEAP,
        cp2k_run=Cp2kStageConfig(run_on="slurm", references=tmp_path / "references"),
        poll_s=1.0,
        timeout_s=600,
    )
    screen = ScreenSettings(relax=RelaxConfig(steps=0, scheduler="serial"))
    results = pd.read_parquet(run_cp2k_stage(candidates, tmp_path / "dft", config, screen))
    row = results.iloc[0]
    assert row["dft_status"] == "completed", row["reason"]
    assert row["e_hull_dft"] == pytest.approx(0.0, abs=1e-6)
    assert list((tmp_path / "dft" / "batches").glob("*.jobid"))
    assert list((tmp_path / "references" / "batches").glob("*.jobid"))


def test_collect_only_starts_no_calculation(tmp_path) -> None:
    """``discovery dft cp2k --collect-only`` lists a candidate not computed yet with its
    status and starts nothing."""
    from typer.testing import CliRunner

    from flows.cli import app

    candidates = write_structures([("cand-Si", SILICON)], tmp_path / "c.parquet")
    workdir = tmp_path / "w"
    config = stage_config(tmp_path)
    args = ["dft", "cp2k", str(candidates), "-w", str(workdir), "-c", config, "--collect-only"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "cand-Si" in result.output and "unsubmitted" in result.output
    assert not list(workdir.glob("calcs/*/attempt-*"))
    assert not list(tmp_path.glob("refs/calcs/*"))


def test_the_cp2k_command_reports_a_candidate_it_cannot_compute(tmp_path) -> None:
    """``discovery dft cp2k``: a CeO2 candidate is listed as rejected with the reason (no
    calculation starts), under the label of the energies."""
    from typer.testing import CliRunner

    from flows.cli import app

    ceo2 = Structure(Lattice.cubic(5.41), ["Ce", "O", "O"], [[0, 0, 0], [0.25] * 3, [0.75] * 3])
    candidates = write_structures([("cand-CeO2", ceo2)], tmp_path / "c.parquet")
    args = ["dft", "cp2k", str(candidates), "-w", str(tmp_path / "w"), "-c", stage_config(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "hull of recomputed competing phases" in result.output
    assert "cand-CeO2" in result.output and "rejected" in result.output
    assert "no DZVP-MOLOPT-SR-GTH basis" in result.output
    assert not (tmp_path / "w" / "calcs").exists()
