"""The SevenNet worker: ``python -m tasks.mlip.sevennet_worker`` with the ``sevennet`` layer.

Started by :class:`tasks.mlip.worker.WorkerCalculator`, never imported by the main process:
it imports ``sevenn`` (which needs the layer's ``e3nn``). Reads a setup dict (checkpoint,
device, threads) from stdin, answers with the model's elements and version, then answers
each geometry with energy, forces and stress (pickles over the original stdout; anything the
model prints goes to stderr). Exits when its input closes.
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
        try:
            atoms = Atoms(
                numbers=message["numbers"],
                positions=message["positions"],
                cell=message["cell"],
                pbc=message["pbc"],
            )
            atoms.calc = calculator
            answer = {
                "energy": float(atoms.get_potential_energy()),
                "forces": atoms.get_forces(),
                "stress": atoms.get_stress(),
            }
        except Exception as err:  # one geometry's failure is that geometry's
            answer = {"error": f"{type(err).__name__}: {err}"}
        answers.send(answer)


if __name__ == "__main__":
    sys.exit(main())
