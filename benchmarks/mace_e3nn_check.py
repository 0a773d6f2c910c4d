"""Does MACE give the same numbers under e3nn 0.6 (SevenNet's layer) as under 0.4.4 (.venv)?

Run from the repository root::

    .venv/bin/python -m benchmarks.mace_e3nn_check

It runs itself twice: in the main environment (e3nn 0.4.4, which mace-torch 0.3.16 pins) and
with the SevenNet package layer first on ``sys.path`` (e3nn 0.6.0, ``infra/layers``). The
first run builds two small ScaleShiftMACE models from hyperparameters (seed 0, float64: the
``tiny`` one of the tests with Si and pair repulsion, and a ``rich`` one with max_ell 3,
L = 2 hidden features, correlation 3, two layers) and saves their weights and whole-model
pickles (how MACE-MP ships its ``.model`` files). The second loads (a) the weights into the
same architecture and (b) the pickles, and both compute energies and forces of four crystals
(Si, NaCl, a rattled and strained NaCl, a low-symmetry Na2Si2Cl2 cell). Writes
``benchmarks/results/mace_e3nn_check.{json,md}``: the largest energy and force differences,
or the error a route raised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.machine import machine_info, save_results
from tasks.mlip.worker import layer_path

CRYSTALS = ("Si_diamond_2", "NaCl_rocksalt_8", "NaCl_perturbed_8", "NaSiCl_lowsym_6")


def _models() -> dict[str, Any]:
    import numpy as np
    import torch
    from e3nn import o3
    from mace import modules

    residual = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
    first = modules.interaction_classes["RealAgnosticInteractionBlock"]
    common = {"num_elements": 3, "atomic_numbers": [11, 14, 17], "gate": torch.nn.functional.silu}
    return {
        "tiny": dict(
            r_max=4.0, num_bessel=4, num_polynomial_cutoff=3, max_ell=1,
            interaction_cls=residual, interaction_cls_first=residual, num_interactions=1,
            hidden_irreps=o3.Irreps("4x0e"), MLP_irreps=o3.Irreps("4x0e"),
            atomic_energies=np.zeros(3), avg_num_neighbors=8.0, correlation=2,
            atomic_inter_scale=1.0, atomic_inter_shift=0.0, pair_repulsion=True, **common,
        ),
        "rich": dict(
            r_max=5.0, num_bessel=8, num_polynomial_cutoff=5, max_ell=3,
            interaction_cls=residual, interaction_cls_first=first, num_interactions=2,
            hidden_irreps=o3.Irreps("8x0e+8x1o+8x2e"), MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.array([-1.0, -2.0, -3.0]), avg_num_neighbors=10.0,
            correlation=3, atomic_inter_scale=1.3, atomic_inter_shift=0.1, **common,
        ),
    }  # fmt: skip


def _crystals() -> dict[str, Any]:
    import numpy as np
    from ase import Atoms
    from ase.build import bulk

    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    strained = nacl.copy()
    strained.rattle(stdev=0.08, seed=1)
    strain = np.array([[1.02, 0.01, 0], [0, 0.99, 0], [0, 0, 1.01]])
    strained.set_cell(strained.cell.array @ strain, scale_atoms=True)
    sites = [
        [0, 0, 0],
        [0.5, 0.5, 0],
        [0.5, 0, 0.5],
        [0, 0.5, 0.5],
        [0.25, 0.25, 0.25],
        [0.75, 0.75, 0.25],
    ]
    frac = np.array(sites) + np.random.default_rng(3).normal(scale=0.04, size=(6, 3))
    cell = np.array([[5.6, 0.2, 0.1], [0.3, 5.4, 0.2], [0.1, 0.4, 5.8]])
    low = Atoms("Na2Si2Cl2", scaled_positions=frac, cell=cell, pbc=True)
    return dict(zip(CRYSTALS, [bulk("Si", "diamond", a=5.43), nacl, strained, low], strict=True))


def _evaluate(calculator: Any) -> dict[str, Any]:
    out = {}
    for name, atoms in _crystals().items():
        atoms.calc = calculator
        out[name] = {
            "energy": float(atoms.get_potential_energy()),
            "forces": atoms.get_forces().tolist(),
        }
    return out


def run_here(folder: Path) -> dict[str, Any]:
    """One side of the check in this interpreter (``folder`` holds the reference files)."""
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # as mace_import_guard
    import e3nn
    import torch
    from mace import modules
    from mace.calculators import MACECalculator

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    result: dict[str, Any] = {"e3nn": e3nn.__version__}
    for name, hyper in _models().items():
        torch.manual_seed(0)
        model = modules.ScaleShiftMACE(**hyper).double().eval()
        weights, pickle = folder / f"{name}_weights.pt", folder / f"{name}.model"
        if not weights.exists():  # the reference side writes them
            torch.save(model.state_dict(), weights)
            torch.save(model, pickle)
        model.load_state_dict(torch.load(weights, map_location="cpu"), strict=True)
        routes: dict[str, Any] = {
            "weights": _evaluate(
                MACECalculator(models=model, device="cpu", default_dtype="float64")
            )
        }
        try:
            loaded = MACECalculator(model_paths=str(pickle), device="cpu", default_dtype="float64")
            routes["pickle"] = _evaluate(loaded)
        except Exception as err:  # what the check is about: report it
            routes["pickle"] = {"error": f"{type(err).__name__}: {err}"[:300]}
        result[name] = routes
    return result


def _side(folder: Path, layer: Path | None) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if layer is not None:
        env["PYTHONPATH"] = str(layer)
    code = "import sys; from pathlib import Path; from benchmarks.mace_e3nn_check import run_here;"
    code += " import json; print(json.dumps(run_here(Path(sys.argv[1]))))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def _largest(new: dict[str, Any], ref: dict[str, Any]) -> dict[str, float] | str:
    import numpy as np

    if "error" in new:
        return str(new["error"])
    return {
        "energy_eV": max(abs(new[c]["energy"] - ref[c]["energy"]) for c in CRYSTALS),
        "force_eV_per_A": max(
            float(np.abs(np.array(new[c]["forces"]) - np.array(ref[c]["forces"])).max())
            for c in CRYSTALS
        ),
    }


def main() -> None:
    machine = machine_info()
    with tempfile.TemporaryDirectory(prefix="mace-e3nn-") as tmp:
        reference = _side(Path(tmp), None)
        layered = _side(Path(tmp), layer_path("sevennet"))
    compared = {
        model: {route: _largest(layered[model][route], reference[model]["weights"])
                for route in ("weights", "pickle")}
        for model in ("tiny", "rich")
    }  # fmt: skip
    result = {"machine": machine, "reference": reference, "layer": layered, "compared": compared}
    lines = [
        "# MACE under e3nn 0.6 (the SevenNet layer) against e3nn 0.4.4 (.venv)",
        "",
        f"{machine['date_utc']} UTC, `python -m benchmarks.mace_e3nn_check`; {machine['cpu']}, "
        f"{machine['cores']} cores. e3nn {reference['e3nn']} (reference) vs {layered['e3nn']}.",
        "",
        "| model | weights loaded into the same architecture | whole-model pickle (as MACE-MP "
        "ships) |",
        "| --- | --- | --- |",
    ]
    for model, routes in compared.items():
        cells = [
            value if isinstance(value, str)
            else f"max dE {value['energy_eV']:.1e} eV, max dF {value['force_eV_per_A']:.1e} eV/Å"
            for value in routes.values()
        ]  # fmt: skip
        lines.append(f"| {model} | {cells[0]} | {cells[1]} |")
    lines += ["", "Four crystals: " + ", ".join(CRYSTALS) + ".", ""]
    print(save_results("mace_e3nn_check", result, "\n".join(lines)))


if __name__ == "__main__":
    main()
