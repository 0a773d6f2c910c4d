"""Small real structures shared by the MLIP tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ase.build import bulk
from pymatgen.core import Structure

from tasks.mlip import mace_import_guard
from tasks.relax import RelaxConfig, atoms_to_structure

torch.set_num_threads(1)


def tiny_mace(path: Path, inter_scale: float = 1.0, pair_repulsion: bool = False) -> Path:
    """Save a small randomly initialised Na/Cl MACE model (energies meaningless, code real)."""
    with mace_import_guard():
        from e3nn import o3
        from mace import modules

        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        torch.manual_seed(0)
        model = modules.ScaleShiftMACE(
            r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1,
            interaction_cls=block, interaction_cls_first=block, num_interactions=1,
            num_elements=2, hidden_irreps=o3.Irreps("4x0e"), MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=np.zeros(2), avg_num_neighbors=8.0, atomic_numbers=[11, 17],
            correlation=2, gate=torch.nn.functional.silu, atomic_inter_scale=inter_scale,
            atomic_inter_shift=0.0, pair_repulsion=pair_repulsion,
        )  # fmt: skip
        torch.save(model.double(), path)
    return path


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
