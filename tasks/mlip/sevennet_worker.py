"""The SevenNet worker: ``python -m tasks.mlip.sevennet_worker`` with the ``sevennet`` layer.

Started by :class:`tasks.mlip.worker.WorkerCalculator`, never imported by the main process:
it imports ``sevenn`` (which needs the layer's ``e3nn``). Reads a setup dict (checkpoint,
device, threads) from stdin, answers with the model's elements and version, then answers
each request (pickles over the original stdout; anything the model prints goes to stderr):

- one geometry (``numbers``, ``positions``, ``cell``, ``pbc``): energy, forces and stress;
- ``{"energies": [geometry, ...]}``: the energies alone, from a copy of the model without
  its force and stress head, run without autograd (three times faster on CPU; the energies
  are the full model's: the head only differentiates them). A geometry that fails gets NaN
  and its error in ``errors``.

Exits when its input closes.
"""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Connection
from typing import Any


def main() -> int:
    """Serve calculations until the parent closes the pipe."""
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # the model's prints must not corrupt the protocol
    requests = Connection(os.dup(0), writable=False)
    setup: dict[str, Any] = requests.recv()
    try:
        import sevenn
        import torch
        from ase import Atoms
        from ase.data import chemical_symbols
        from sevenn.calculator import SevenNetCalculator

        torch.set_num_threads(int(setup["threads"]))
        calculator = SevenNetCalculator(model=setup["checkpoint"], device=setup["device"])
        energy_model = _energy_only(calculator.model)
    except Exception as err:  # the parent reports it as an unavailable model
        answers.send({"error": f"cannot load SevenNet: {type(err).__name__}: {err}"})
        return 1
    species = sorted(chemical_symbols[int(z)] for z in calculator.type_map)
    answers.send({"species": species, "version": sevenn.__version__})
    while True:
        try:
            message = requests.recv()
        except EOFError:
            return 0
        if "energies" in message:
            done = [_energy(energy_model, calculator, g) for g in message["energies"]]
            answers.send({"energies": [e for e, _ in done], "errors": [w for _, w in done]})
            continue
        try:
            atoms = Atoms(**message)
            atoms.calc = calculator
            answer = {
                "energy": float(atoms.get_potential_energy()),
                "forces": atoms.get_forces(),
                "stress": atoms.get_stress(),
            }
        except Exception as err:  # one geometry's failure is that geometry's
            answer = {"error": f"{type(err).__name__}: {err}"}
        answers.send(answer)


def _energy_only(model: Any) -> Any:
    """A copy of a SevenNet model that stops at the total energy (no gradient head)."""
    import copy

    energy_model = copy.deepcopy(model)
    energy_model.delete_module_by_key("force_output")
    energy_model.key_grad = None
    energy_model.set_is_batch_data(False)
    return energy_model.eval()


def _energy(model: Any, calculator: Any, geometry: dict[str, Any]) -> tuple[float, str]:
    """Total energy (eV) of one geometry from the energy-only model, or NaN and why."""
    import sevenn._keys as keys
    import torch
    from ase import Atoms
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    try:
        graph = AtomGraphData.from_numpy_dict(
            unlabeled_atoms_to_graph(Atoms(**geometry), calculator.cutoff, with_shift=False)
        )
        with torch.inference_mode():
            return float(model(graph.to(calculator.device))[keys.PRED_TOTAL_ENERGY]), ""
    except Exception as err:  # one geometry's failure is that geometry's
        return float("nan"), f"{type(err).__name__}: {err}"


if __name__ == "__main__":
    sys.exit(main())
