"""Small real structures shared by the MLIP tests."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from ase.build import bulk
from pymatgen.core import Structure

from tasks.mlip.results import atoms_to_structure
from tasks.mlip.settings import RelaxConfig

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def serial() -> RelaxConfig:
    """Default physics settings, run in this process."""
    return RelaxConfig(scheduler="serial")


@pytest.fixture(scope="session")
def nacl() -> Structure:
    """Rock-salt NaCl, 2 atoms, 3% compressed so a relaxation has work to do."""
    return atoms_to_structure(bulk("NaCl", "rocksalt", a=5.64 * 0.97))


@pytest.fixture(scope="session")
def alpd_reference(tmp_path_factory: pytest.TempPathFactory, mp20_train_sample) -> str:
    """A one-row MP-20 reference set: AlPd (mp-829, CsCl type, 2 atoms)."""
    frame = pd.read_csv(mp20_train_sample)
    path = tmp_path_factory.mktemp("refs") / "alpd.csv.gz"
    frame[frame["material_id"] == "mp-829"].to_csv(path, index=False)
    return str(path)
