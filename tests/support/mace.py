"""A tiny random MACE model, built for the tests (energies meaningless, code real)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tasks.mlip.backends import mace_import_guard


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
