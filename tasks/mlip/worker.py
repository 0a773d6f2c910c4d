"""MLIPs whose packages conflict with the main environment, run in a worker interpreter.

Some potentials need versions of shared packages the others cannot live with (SevenNet
needs ``e3nn >= 0.5``, ``mace-torch`` pins ``e3nn == 0.4.4``). Such an MLIP gets a *package
layer*: a folder ``<venv>/layers/<name>/`` holding only the conflicting packages, installed
by ``make setup`` (``infra/layers/<name>.txt``). Its calculations run in a worker process of
the same interpreter with the layer first on ``sys.path``, so the layer's packages shadow the
main environment's there and nowhere else; everything else (torch, ASE, numpy) is shared.

:class:`WorkerCalculator` is the ASE calculator the relaxation engine holds: it sends each
geometry to the worker and reads back energy, forces and stress (a pickle per message over
the worker's stdin / stdout; the worker's own printing goes to stderr). A worker that died
is started again on the next calculation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

log = logging.getLogger(__name__)

#: Overrides where the layers are (default: ``<sys.prefix>/layers``, i.e. ``.venv/layers``).
LAYERS_ENV = "DISCOVERY_MLIP_LAYERS"


class WorkerError(RuntimeError):
    """The worker could not start, or a calculation in it failed (the message says why)."""


def layer_path(name: str) -> Path:
    """The package layer of an MLIP (it may not exist: the caller checks)."""
    root = os.environ.get(LAYERS_ENV)
    return (Path(root) if root else Path(sys.prefix) / "layers") / name


class WorkerCalculator(Calculator):
    """An ASE calculator whose model runs in a worker interpreter with a package layer.

    Parameters
    ----------
    module
        The worker's module (run as ``python -m module``); it reads a setup dict, answers
        with an info dict, then answers each geometry with its results.
    layer
        The package layer put first on the worker's ``sys.path``.
    setup
        What the worker needs to build its calculator (checkpoint, device...).
    threads
        Torch threads of the worker.
    """

    def __init__(self, module: str, layer: Path, setup: dict[str, Any], threads: int) -> None:
        super().__init__()
        self.implemented_properties = ["energy", "free_energy", "forces", "stress"]
        self._module, self._layer, self._setup, self._threads = module, layer, setup, threads
        self._process: subprocess.Popen[bytes] | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self.info: dict[str, Any] = {}
        self._start()

    def _start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(self._layer), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "OMP_NUM_THREADS": str(self._threads),
        }
        self._process = subprocess.Popen(
            [sys.executable, "-m", self._module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._send = Connection(os.dup(self._process.stdin.fileno()), readable=False)
        self._recv = Connection(os.dup(self._process.stdout.fileno()), writable=False)
        self.info = self._ask({**self._setup, "threads": self._threads})

    def _ensure_running(self) -> None:
        """Start the worker again if it died since the last calculation."""
        if self._process is None or self._process.poll() is not None:
            self.close()
            self._start()

    def _ask(self, message: dict[str, Any]) -> dict[str, Any]:
        assert self._send is not None and self._recv is not None
        try:
            self._send.send(message)
            answer: dict[str, Any] = self._recv.recv()
        except (EOFError, OSError) as err:
            code = self._process.poll() if self._process else None
            self.close()
            raise WorkerError(
                f"the {self._module} worker exited (code {code}; its stderr is above): {err}"
            ) from None
        if "error" in answer:
            raise WorkerError(answer["error"])
        return answer

    def energies(self, structures: Sequence[Atoms]) -> list[float]:
        """Energies (eV) alone of several geometries in one request (NaN where one failed).

        Workers serve these from the model without its gradient head, so a single point
        costs a third of :meth:`calculate`'s energy, forces and stress.
        """
        self._ensure_running()
        answer = self._ask({"energies": [_geometry(atoms) for atoms in structures]})
        for atoms, error in zip(structures, answer["errors"], strict=True):
            if error:
                log.warning("%s: %s single point failed: %s", self._module, atoms.symbols, error)
        return [float(e) for e in answer["energies"]]

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Energy (eV), forces (eV/Å) and stress (eV/Å³, Voigt) of ``atoms`` from the worker."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        self._ensure_running()
        answer = self._ask(_geometry(self.atoms))
        self.results = {
            "energy": float(answer["energy"]),
            "free_energy": float(answer["energy"]),
            "forces": np.asarray(answer["forces"], dtype=float),
            "stress": np.asarray(answer["stress"], dtype=float),
        }

    def close(self) -> None:
        """Stop the worker (it exits when its input closes)."""
        for connection in (self._send, self._recv):
            if connection is not None:
                connection.close()
        self._send = self._recv = None
        if self._process is not None:
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    pipe.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown nothing is left to close
            self.close()


def _geometry(atoms: Atoms) -> dict[str, Any]:
    """What a worker needs of a geometry (the keyword arguments of :class:`ase.Atoms`)."""
    return {
        "numbers": atoms.get_atomic_numbers(),
        "positions": atoms.get_positions(),
        "cell": np.asarray(atoms.get_cell()),
        "pbc": atoms.get_pbc(),
    }
