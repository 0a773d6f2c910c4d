"""Machine-learned interatomic potentials (MLIPs) behind one small interface.

A backend has a ``name``, a ``version`` string (package version + model identity, used in
cache keys, so a different model never reuses another model's energies) and a
``calculator()`` returning an ASE calculator.

Backends
--------
``chgnet``
    The offline default: weights ship inside the ``chgnet`` wheel. ``model`` may be a
    bundled version (``0.3.0``, ``0.2.0``, ``r2scan``) or a path to a CHGNet checkpoint.
    CHGNet 0.3.0 was trained on MPtrj energies with the MP2020 corrections applied, so its
    energies are on the MP2020-corrected scale.
``mace``
    MACE-MP family via ``mace-torch``. ``model`` is a local ``.model`` file or a MACE-MP
    name (``medium``, ``medium-mpa-0``...) looked up in ``cache_dir`` (default
    ``~/.cache/mace``). Energies are raw PBE/PBE+U (MPtrj), *not* MP2020-corrected.
``sevennet``
    SevenNet (MIT) from the ``sevenn`` wheel's own checkpoints, offline: ``7net-0`` (the
    default; Matbench Discovery F1 0.724) or ``7net-l3i5`` (F1 0.760, about 2.3× slower on
    CPU), or a local checkpoint file. Trained on MPtrj: raw PBE/PBE+U energies, *not*
    MP2020-corrected. ``sevenn`` needs ``e3nn >= 0.5`` and ``mace-torch`` pins 0.4.4, so it
    runs in a worker interpreter with a package layer of its own (:mod:`tasks.mlip.worker`).
``matgl``
    M3GNet / CHGNet / TensorNet potentials via ``matgl``. ``model`` is a local model
    directory (``model.json``, ``model.pt``, ``state.pt``) or a pretrained name looked up as
    ``cache_dir/<name>`` (default cache ``~/.cache/matgl``). Energies are on the scale of
    the model's training data (MatPES models: uncorrected PBE / r2SCAN).

The convex hull built by :mod:`tasks.mlip.hull` uses the same backend for candidates and
references, so it is self-consistent per MLIP; the energy scale only matters when
energies of different MLIPs (or DFT) are mixed, which this pipeline never does.

Nothing here downloads: on a machine without internet a missing model is a
:class:`MLIPUnavailableError` naming the missing file and how to obtain it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import distributions
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Protocol, cast

from ase.calculators.calculator import Calculator
from ase.data import chemical_symbols
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from tasks.mlip.settings import MLIPConfig
from tasks.mlip.worker import WorkerCalculator, WorkerError, layer_path

#: Environment variable ``mace`` sets at import time to disable torch's weights-only loading.
_TORCH_UNSAFE_LOAD_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"
#: CHGNet checkpoints bundled with the ``chgnet`` wheel.
CHGNET_BUNDLED = ("0.3.0", "0.2.0", "r2scan")
#: SevenNet checkpoints shipped in the pinned ``sevenn`` wheel (``infra/layers/sevennet.txt``):
#: path inside the layer and :func:`sha256_file` digest. They are pickles; these digests are
#: their approval.
SEVENNET_SHIPPED = {
    "7net-0": (
        "sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth",
        "0ee44df90d5eb82fd9eec04e1bbca2c82ce9793349c64e4084eb2dbd3ce3523d",
    ),
    "7net-l3i5": (
        "sevenn/pretrained_potentials/SevenNet_l3i5/checkpoint_l3i5.pth",
        "eecb17ff1ff3e11bfdc33a841fd4d8deb23fb25a8ba6975701dd93c37e395b65",
    ),
}
_MATGL_FILES = ("model.json", "model.pt", "state.pt")


class MLIPUnavailableError(RuntimeError):
    """The requested MLIP cannot be loaded (missing weights or package); says how to fix."""


class MLIPBackend(Protocol):
    """What relaxation and hull code need from an MLIP."""

    @property
    def name(self) -> str:
        """Short backend name (``chgnet``, ``mace``, ``matgl``)."""
        ...

    @property
    def version(self) -> str:
        """Package version and model identity, e.g. ``chgnet-0.4.2:0.3.0``."""
        ...

    def calculator(self) -> Calculator:
        """A fresh ASE calculator (energy in eV, forces in eV/Å, stress in eV/Å³)."""
        ...

    def supported_elements(self, calculator: Calculator) -> frozenset[str]:
        """Element symbols the model behind ``calculator`` was trained on."""
        ...

    def energies(self, calculator: Calculator, structures: Sequence[Structure]) -> list[float]:
        """Total energies (eV) of structures at their geometry, no forces (single points)."""
        ...


def calculator_energies(calculator: Calculator, structures: Sequence[Structure]) -> list[float]:
    """Single-point energies one structure at a time through an ASE calculator."""
    out = []
    for structure in structures:
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.calc = calculator
        out.append(float(atoms.get_potential_energy()))
    return out


def file_digest(path: Path) -> str:
    """Short sha256 of a file, or of a directory's files (the model identity in versions)."""
    return sha256_file(path)[:12]


def sha256_file(path: Path) -> str:
    """The full sha256 of a file, or of a directory's files (sorted by name)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def require_approval(path: Path, config: MLIPConfig) -> None:
    """Refuse to unpickle a model file unless its sha256 is ``config.model_sha256``.

    Raises
    ------
    MLIPUnavailableError
        The file is not approved (the message gives its sha256 and how to approve it).
    """
    actual = sha256_file(path)
    if config.model_sha256 != actual:
        raise MLIPUnavailableError(
            f"{path} is a pickle: loading it runs code it names. Check where it came from, "
            f"then approve it with mlip.model_sha256: {actual}"
            + (
                f" (the configured sha256 {config.model_sha256} does not match)"
                if config.model_sha256
                else ""
            )
        )


class CHGNetBackend:
    """CHGNet from the ``chgnet`` package (bundled weights or a local checkpoint)."""

    name = "chgnet"

    def __init__(self, config: MLIPConfig) -> None:
        self.config = config
        model = config.model or CHGNET_BUNDLED[0]
        if model in CHGNET_BUNDLED:
            self._path: Path | None = None
            self._model_id = model
        else:
            path = Path(model).expanduser()
            if not path.is_file():
                raise MLIPUnavailableError(
                    f"CHGNet checkpoint {str(path)!r} not found; pass one of the bundled "
                    f"versions {', '.join(CHGNET_BUNDLED)} or an existing checkpoint file"
                )
            self._path = path
            self._model_id = f"{path.name}@{file_digest(path)}"

    @property
    def version(self) -> str:
        """``chgnet-<package version>:<model>``."""
        return f"chgnet-{package_version('chgnet')}:{self._model_id}"

    def calculator(self) -> Calculator:
        """A :class:`chgnet.model.CHGNetCalculator` on ``config.device``."""
        from chgnet.model import CHGNet, CHGNetCalculator

        with contextlib.redirect_stdout(io.StringIO()):  # chgnet prints its device
            if self._path is None:
                model = CHGNet.load(model_name=self._model_id, use_device="cpu", verbose=False)
            else:
                model = _chgnet_from_checkpoint(self._path, self.config)
            return CHGNetCalculator(model=model, use_device=self.config.device)

    def supported_elements(self, calculator: Calculator) -> frozenset[str]:
        """Z = 1 .. the size of CHGNet's atom embedding (94: H to Pu)."""
        n = cast(Any, calculator).model.atom_embedding.embedding.num_embeddings
        return frozenset(chemical_symbols[1 : n + 1])

    def energies(self, calculator: Calculator, structures: Sequence[Structure]) -> list[float]:
        """Energies in batches of the model's graphs, energy head only (measured here: 375
        atoms/s on one core against 181 through the ASE calculator, equal to 5e-7 eV/atom)."""
        model = cast(Any, calculator).model
        with contextlib.redirect_stdout(io.StringIO()):
            predicted = model.predict_structure(list(structures), task="e", batch_size=16)
        if isinstance(predicted, dict):
            predicted = [predicted]
        return [float(p["e"]) * len(s) for p, s in zip(predicted, structures, strict=True)]


def _chgnet_from_checkpoint(path: Path, config: MLIPConfig) -> Any:
    """A CHGNet checkpoint, loaded weights-only (a pickle needs ``model_sha256`` approval)."""
    import torch
    from chgnet.model import CHGNet

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a plain weights file
        require_approval(path, config)
        return CHGNet.from_file(str(path))
    return CHGNet.from_dict(state["model"])


@contextlib.contextmanager
def mace_import_guard() -> Iterator[None]:
    """Import/load MACE with unsafe ``torch.load`` enabled, then restore the environment.

    ``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` for the whole process; MACE
    (and e3nn) need it while importing and loading a ``.model`` pickle. Restoring the
    previous value afterwards keeps weights-only loading on for every other checkpoint.
    """
    previous = os.environ.get(_TORCH_UNSAFE_LOAD_ENV)
    os.environ[_TORCH_UNSAFE_LOAD_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_TORCH_UNSAFE_LOAD_ENV, None)
        else:
            os.environ[_TORCH_UNSAFE_LOAD_ENV] = previous


def _mace_named_model(name: str, cache_dir: Path | None) -> Path:
    """Local path of a MACE-MP named model, or a clear error with its download URL."""
    with mace_import_guard():
        from mace.calculators.foundations_models import mace_mp_urls

    if name not in mace_mp_urls:
        raise MLIPUnavailableError(
            f"MACE model {name!r} is neither an existing file nor a known MACE-MP name "
            f"({', '.join(sorted(mace_mp_urls))})"
        )
    url = mace_mp_urls[name]
    # Same file name as mace's own downloader, so its cache is reused.
    file_name = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
    directory = cache_dir or Path.home() / ".cache" / "mace"
    path = directory / file_name
    if not path.is_file():
        raise MLIPUnavailableError(
            f"MACE-MP model {name!r} is not available offline: missing file {path}. "
            f"Download {url} on a machine with internet and copy it to that path, "
            "or pass the downloaded file's path as the model"
        )
    return path


class MACEBackend:
    """MACE-MP family via ``mace-torch`` from a local ``.model`` file (float64)."""

    name = "mace"

    def __init__(self, config: MLIPConfig) -> None:
        if not config.model:
            raise MLIPUnavailableError(
                "the mace backend needs a model: a local .model file or a MACE-MP name "
                "such as 'medium-mpa-0' present in the cache directory"
            )
        self.config = config
        path = Path(config.model).expanduser()
        if not path.is_file() and ("/" in config.model or path.suffix):
            raise MLIPUnavailableError(
                f"MACE model file {path} not found; pass an existing .model file or a "
                "MACE-MP name such as 'medium-mpa-0'"
            )
        self.path = path if path.is_file() else _mace_named_model(config.model, config.cache_dir)
        require_approval(self.path, config)

    @property
    def version(self) -> str:
        """``mace-<package version>:<file name>@<content hash>``."""
        return f"mace-{package_version('mace-torch')}:{self.path.name}@{file_digest(self.path)}"

    def calculator(self) -> Calculator:
        """A :class:`mace.calculators.MACECalculator` in float64 (for geometry optimisation)."""
        with mace_import_guard():
            from mace.calculators import MACECalculator

            return MACECalculator(
                model_paths=str(self.path), device=self.config.device, default_dtype="float64"
            )

    def supported_elements(self, calculator: Calculator) -> frozenset[str]:
        """The atomic numbers of the model's element table."""
        zs = cast(Any, calculator).models[0].atomic_numbers.tolist()
        return frozenset(chemical_symbols[int(z)] for z in zs)

    def energies(self, calculator: Calculator, structures: Sequence[Structure]) -> list[float]:
        """Single points through the ASE calculator."""
        return calculator_energies(calculator, structures)


class MatGLBackend:
    """A matgl potential (M3GNet, CHGNet, TensorNet...) from a local model directory."""

    name = "matgl"

    def __init__(self, config: MLIPConfig) -> None:
        if not config.model:
            raise MLIPUnavailableError(
                "the matgl backend needs a model: a local model directory or a pretrained "
                "name such as 'M3GNet-MatPES-PBE-v2025.1-PES' present in the cache directory"
            )
        self.config = config
        path = Path(config.model).expanduser()
        if not path.is_dir():
            path = (config.cache_dir or Path.home() / ".cache" / "matgl") / config.model
        missing = [f for f in _MATGL_FILES if not (path / f).is_file()]
        if missing:
            raise MLIPUnavailableError(
                f"matgl model {config.model!r} is not available offline: missing "
                f"{', '.join(str(path / f) for f in missing)}. On a machine with internet run "
                f"`python -c \"import matgl; matgl.load_model('{config.model}').save('OUT')\"` "
                f"and copy OUT's {', '.join(_MATGL_FILES)} to {path}"
            )
        self.path = path
        require_approval(self.path, config)

    @property
    def version(self) -> str:
        """``matgl-<package version>:<directory name>@<content hash>``."""
        return f"matgl-{package_version('matgl')}:{self.path.name}@{file_digest(self.path)}"

    def calculator(self) -> Calculator:
        """A :class:`matgl.ext.ase.PESCalculator` with stress in eV/Å³ (ASE's unit)."""
        import matgl
        from matgl.ext.ase import PESCalculator

        potential = matgl.load_model(self.path)
        return PESCalculator(potential, stress_unit="eV/A3")

    def supported_elements(self, calculator: Calculator) -> frozenset[str]:
        """The model's ``element_types``."""
        return frozenset(cast(Any, calculator).potential.model.element_types)

    def energies(self, calculator: Calculator, structures: Sequence[Structure]) -> list[float]:
        """Single points through the ASE calculator."""
        return calculator_energies(calculator, structures)


class SevenNetBackend:
    """SevenNet from its wheel (or a local checkpoint), run in the ``sevennet`` layer's worker."""

    name = "sevennet"

    def __init__(self, config: MLIPConfig) -> None:
        self.config = config
        self.layer = layer_path("sevennet")
        model = config.model or "7net-0"
        if model in SEVENNET_SHIPPED:
            relative, sha256 = SEVENNET_SHIPPED[model]
            self.path = self.layer / relative
            if not self.path.is_file():
                raise MLIPUnavailableError(
                    f"SevenNet {model!r} needs the sevennet package layer at {self.layer} "
                    "(missing its checkpoint): run `make setup` (it installs "
                    "infra/layers/sevennet.txt there)"
                )
            if sha256_file(self.path) != sha256:
                raise MLIPUnavailableError(
                    f"{self.path} is not the checkpoint the pinned sevenn wheel ships (sha256 "
                    "differs): reinstall the layer with `make setup`"
                )
            self._model_id = model
        else:
            self.path = Path(model).expanduser()
            if not self.path.is_file():
                raise MLIPUnavailableError(
                    f"SevenNet model {model!r} is neither a shipped checkpoint "
                    f"({', '.join(SEVENNET_SHIPPED)}) nor an existing file"
                )
            require_approval(self.path, config)
            self._model_id = f"{self.path.name}@{file_digest(self.path)}"
        if not self.layer.is_dir():
            raise MLIPUnavailableError(
                f"no sevennet package layer at {self.layer}: run `make setup`"
            )

    @property
    def version(self) -> str:
        """``sevenn-<layer's package version>:<model>``."""
        found = [d.version for d in distributions(path=[str(self.layer)]) if d.name == "sevenn"]
        return f"sevenn-{found[0] if found else 'unknown'}:{self._model_id}"

    def calculator(self) -> Calculator:
        """A :class:`tasks.mlip.worker.WorkerCalculator` serving SevenNet from its layer."""
        import torch

        setup = {"checkpoint": str(self.path), "device": self.config.device}
        try:
            return WorkerCalculator(
                "tasks.mlip.sevennet_worker", self.layer, setup, torch.get_num_threads()
            )
        except WorkerError as err:
            raise MLIPUnavailableError(str(err)) from None

    def supported_elements(self, calculator: Calculator) -> frozenset[str]:
        """The checkpoint's ``chemical_species`` (89 elements, H to Pu, for the shipped ones)."""
        return frozenset(cast(WorkerCalculator, calculator).info["species"])

    def energies(self, calculator: Calculator, structures: Sequence[Structure]) -> list[float]:
        """Single points through the worker, energies only (no force head, no autograd)."""
        worker = cast(WorkerCalculator, calculator)
        return worker.energies([AseAtomsAdaptor.get_atoms(s) for s in structures])


_BACKENDS: dict[str, Callable[[MLIPConfig], MLIPBackend]] = {
    "chgnet": CHGNetBackend,
    "mace": MACEBackend,
    "matgl": MatGLBackend,
    "sevennet": SevenNetBackend,
}


def load_mlip(config: MLIPConfig | None = None) -> MLIPBackend:
    """Resolve an :class:`MLIPConfig` into a backend (checks the model exists; cheap).

    Parameters
    ----------
    config
        Which backend and model; default CHGNet 0.3.0 from the wheel.

    Returns
    -------
    MLIPBackend
        Object with ``name``, ``version`` and ``calculator()``.

    Raises
    ------
    MLIPUnavailableError
        The model file is missing (the message names it and how to get it).
    """
    config = config or MLIPConfig()
    return _BACKENDS[config.name](config)


def safe_dirname(text: str) -> str:
    """A file-system-safe directory name for an MLIP version string."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)
