"""Fault injection: every configuration error arrives before any work, naming its key.

Each case breaks one thing of the micro profile the way a user would. The flow's first
step (:func:`flows.discovery.check_parameters`, which runs before the run directory, the
ingest or the Dask cluster exist) must refuse it with the key in the message, and nothing
may be left behind. How long each refusal takes is measured by
``benchmarks/config_errors.py`` (timings are not asserted here).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.profiles import micro_profile

from flows.discovery import check_parameters


def _set(profile: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = profile
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[leaf] = value


CASES: dict[str, tuple[dict[str, Any], str]] = {
    "missing dataset": ({"datasets.train.path": "/no/such/train.csv"}, "datasets.train.path"),
    "missing checkpoint": ({"models.0.checkpoint": "/no/such/model.pt"}, "models.0.checkpoint"),
    "model profile that does not validate": (
        {"models.0.profile": "/no/such/profile.yaml"},
        "models.0.profile",
    ),
    "missing CHGNet file": ({"mlip.model": "/no/such/chgnet.pth.tar"}, "mlip.model"),
    "MACE without a model": ({"mlip.name": "mace"}, "mlip.model"),
    "unknown hull reference": ({"hull.reference": ["/no/such/phases.csv"]}, "hull.reference.0"),
    "reference table that is missing": ({"hull.table": "/no/such/table.parquet"}, "hull.table"),
    "MLIP fine-tuning without DFT": (
        {"loop.mlip_finetune": True, "dft.mode": "skip"},
        "loop.mlip_finetune",
    ),
    "DFT on SLURM without sbatch": ({"dft.mode": "slurm"}, "dft.mode"),
    "Dask on SLURM without sbatch": ({"dask.cluster": "slurm"}, "dask.cluster"),
    "CP2K that is not installed": (
        {"dft.mode": "cp2k", "dft.cp2k.cp2k_cmd": "/no/such/cp2k.psmp"},
        "dft.mode",
    ),
}


@pytest.fixture
def micro(tmp_path, mp20_train_sample) -> Path:
    return micro_profile(tmp_path, mp20_train_sample)


@pytest.mark.parametrize("case", list(CASES))
def test_a_config_error_is_refused_before_any_work(case, micro, monkeypatch) -> None:
    changes, key = CASES[case]
    profile = yaml.safe_load(micro.read_text())
    for dotted, value in changes.items():
        _set(profile, dotted, value)
    micro.write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # no sbatch on this PATH
    with pytest.raises(ValueError, match="cannot run") as refused:
        check_parameters(str(micro), None)
    assert f"- {key}" in str(refused.value)
    assert not Path(profile["run_root"]).exists()  # no run directory, no ingest


def test_every_error_is_listed_at_once(micro, monkeypatch) -> None:
    profile = yaml.safe_load(micro.read_text())
    # all but four: MACE would hide the CHGNet file, a checkpoint the model profile, SLURM
    # DFT the skipped DFT, and CP2K the SLURM DFT
    exclusive = (
        "MACE without a model",
        "missing checkpoint",
        "MLIP fine-tuning without DFT",
        "CP2K that is not installed",
    )
    combined = {k: v for k, v in CASES.items() if k not in exclusive}
    for changes, _ in combined.values():
        for dotted, value in changes.items():
            _set(profile, dotted, value)
    micro.write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    with pytest.raises(ValueError) as refused:
        check_parameters(str(micro), None)
    listed = [line for line in str(refused.value).splitlines() if line.startswith("  - ")]
    assert [line.split(":")[0].removeprefix("  - ") for line in listed] == [
        key for _, key in combined.values()
    ]


def test_a_duplicate_yaml_key_names_the_key_and_line(micro) -> None:
    text = micro.read_text() + "seed: 1\n"  # 'seed' is already set above
    micro.write_text(text)
    line = len(text.splitlines())
    with pytest.raises(ValueError, match=rf"duplicate key 'seed'.*line {line}"):
        check_parameters(str(micro), None)
