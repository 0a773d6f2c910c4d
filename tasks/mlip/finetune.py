"""Fine-tuning the MLIP on the DFT results a loop has collected (``loop.mlip_finetune``).

After round k, :func:`finetune_mlip` fine-tunes the *base* MLIP (CHGNet, through its own
:class:`chgnet.trainer.Trainer`) on every DFT calculation the run completed so far
(:func:`dft_training_points`), and writes a versioned checkpoint. Round k+1 screens with it
(:func:`finetuned_screen`): candidates are relaxed with the fine-tuned model *and* every
reference energy of its hull is computed with it, so one hull never mixes MLIP versions
(the shipped reference table, built with the base CHGNet, is not used for that round).

What is learned: the energy per atom each calculation's DFT hull used (MP2020-corrected
VASP energies, on CHGNet's scale; the stand-in's CHGNet energies as they are) at its final
geometry. Forces are not stored with the results, so the targets are energies only, and
only the last interaction layer and the readout are trained (the rest frozen, CHGNet's
fine-tuning recipe), with a small learning rate: a handful of points should correct the
model locally, not rewrite it. With only a few calculations there is nothing to hold out,
so the recorded errors are training errors (before and after), and ``finetune.json`` says so.

With the local DFT stand-in the "DFT" numbers are CHGNet's own, so fine-tuning on them is
circular; the quick profile leaves it off and the report says so.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from tasks.core.atomic import atomic_write, write_json_atomic
from tasks.core.config import ConfigError
from tasks.core.dft_results import read_dft_results
from tasks.mlip.backends import load_mlip
from tasks.mlip.reference_table import SHIPPED_TABLE, TableMeta, meta_path
from tasks.mlip.settings import MLIPConfig, ScreenSettings

#: File names of a fine-tuned MLIP in its directory.
CHECKPOINT = "chgnet.pt"
RECORD = "finetune.json"
#: CHGNet modules that stay frozen (all but the last atom-conv layer and the readout).
_FROZEN = (
    "atom_embedding",
    "bond_embedding",
    "angle_embedding",
    "bond_basis_expansion",
    "angle_basis_expansion",
    "bond_conv_layers",
    "angle_layers",
)


@dataclass(frozen=True)
class TrainingPoint:
    """One DFT result the MLIP learns: the final structure and its energy per atom."""

    id: str
    structure: Structure
    energy_per_atom: float
    source: str


def dft_training_points(results: Sequence[str | Path]) -> list[TrainingPoint]:
    """Every completed DFT calculation of ``dft_results.json`` files, first occurrence of an id.

    Parameters
    ----------
    results
        ``dft_results.json`` files (:func:`tasks.dft.collect.write_results`), in round order.

    Returns
    -------
    list of TrainingPoint
        Final structures with the energy the DFT hull used (corrected where it was).
    """
    points: dict[str, TrainingPoint] = {}
    for path in results:
        for result in read_dft_results(path):
            if result.dft_status != "completed" or not result.entry or result.id in points:
                continue
            entry = ComputedStructureEntry.from_dict(result.entry)
            points[result.id] = TrainingPoint(
                result.id, entry.structure, float(entry.energy_per_atom), str(path)
            )
    return list(points.values())


def check_finetunable(mlip: MLIPConfig) -> None:
    """Raise :class:`ConfigError` unless ``mlip`` is a backend this module can fine-tune."""
    if mlip.name != "chgnet":
        raise ConfigError(
            f"loop.mlip_finetune: fine-tuning is implemented for CHGNet, not {mlip.name!r}"
        )


def _energy_mae(model: Any, points: Sequence[TrainingPoint]) -> float:
    with contextlib.redirect_stdout(io.StringIO()):
        predicted = model.predict_structure([p.structure for p in points], task="e")
    if isinstance(predicted, dict):
        predicted = [predicted]
    errors = [float(r["e"]) - p.energy_per_atom for r, p in zip(predicted, points, strict=True)]
    return float(np.mean(np.abs(errors)))


def finetune_mlip(
    points: Sequence[TrainingPoint],
    base: MLIPConfig,
    out_dir: str | Path,
    epochs: int,
    lr: float,
    seed: int,
) -> Path:
    """Fine-tune the base CHGNet on ``points`` and write ``out_dir/chgnet.pt``.

    Parameters
    ----------
    points
        The DFT results to learn (:func:`dft_training_points`); at least one.
    base
        The MLIP the run screens with (the fine-tuning starts from it every round).
    out_dir
        Receives the checkpoint and ``finetune.json`` (ids, base and new version, errors).
    epochs, lr, seed
        CHGNet trainer settings (Adam, cosine schedule).

    Returns
    -------
    Path
        The checkpoint (weights only; load it with ``mlip.model`` set to its path). An
        existing checkpoint with its record is returned as it is (a resumed run).
    """
    import torch
    from chgnet.data.dataset import StructureData, get_loader
    from chgnet.trainer import Trainer

    check_finetunable(base)
    if not points:
        raise ValueError("no DFT results to fine-tune the MLIP on")
    out_dir = Path(out_dir)
    path = out_dir / CHECKPOINT
    if path.is_file() and (out_dir / RECORD).is_file():
        return path
    backend = load_mlip(base)
    model = backend.calculator().model  # type: ignore[attr-defined]
    for name in _FROZEN:
        for param in getattr(model, name).parameters():
            param.requires_grad = False
    for layer in model.atom_conv_layers[:-1]:
        for param in layer.parameters():
            param.requires_grad = False
    mae_before = _energy_mae(model, points)
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet's trainer prints its progress
        data = StructureData(
            [p.structure for p in points],
            [p.energy_per_atom for p in points],
            [np.zeros((len(p.structure), 3)).tolist() for p in points],
            structure_ids=[p.id for p in points],
        )
        loader = get_loader(data, batch_size=min(8, len(points)), pin_memory=False)
        trainer = Trainer(
            model,
            targets="e",  # type: ignore[arg-type]  # accepted; its annotation omits it
            learning_rate=lr,
            epochs=epochs,
            torch_seed=seed,
            data_seed=seed,
            use_device=base.device,
            print_freq=10**6,
        )
        trainer.train(loader, loader, save_dir=str(out_dir / "trainer"))
    shutil.rmtree(out_dir / "trainer", ignore_errors=True)
    if trainer.model is None:
        raise RuntimeError("CHGNet's trainer lost its model")
    tuned = trainer.model.to("cpu")
    atomic_write(path, lambda tmp: torch.save({"model": tuned.as_dict()}, tmp))
    version = load_mlip(base.model_copy(update={"model": str(path)})).version
    write_json_atomic(
        out_dir / RECORD,
        {
            "base": backend.version,
            "version": version,
            "targets": "energy per atom (forces are not stored with the DFT results)",
            "trained": "last atom-conv layer and readout; the rest frozen",
            "epochs": epochs,
            "lr": lr,
            "seed": seed,
            "n_points": len(points),
            "ids": [p.id for p in points],
            "sources": sorted({p.source for p in points}),
            "train_mae_ev_per_atom": {"before": mae_before, "after": _energy_mae(tuned, points)},
            "note": "errors on the training points: too few to hold any out",
        },
    )
    return path


def finetuned_screen(screen: ScreenSettings, checkpoint: str | Path) -> ScreenSettings:
    """The screen settings of a round screened with a fine-tuned MLIP.

    The MLIP is the checkpoint; a hull that read its energies from a reference table (built
    with the base MLIP) computes them instead, the way the table did (single points or
    relaxations), with the fine-tuned model (cached per version), so no hull mixes two MLIPs.
    """
    tuned = screen.mlip.model_copy(update={"model": str(checkpoint)})
    hull = screen.hull
    if hull.energies == "table":
        table = Path(hull.table) if hull.table else SHIPPED_TABLE
        method = TableMeta.model_validate_json(meta_path(table).read_text()).method
        hull = hull.model_copy(update={"energies": method})
    return screen.model_copy(update={"mlip": tuned, "hull": hull})
