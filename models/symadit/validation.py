"""Validation metrics of both SymADiT stages (called by the trainer with EMA weights).

Autoencoder (on held-out crystals, deterministic encode → decode → symmetrize, argmax heads):

* ``val/recon_element_acc``, ``val/recon_wyckoff_acc``: token accuracies;
* ``val/recon_crystal_acc``: crystals whose every element and position is right;
* ``val/coord_err``: mean periodic |x̂ − x| over free coordinates (fractional units);
* ``val/length_rel_err``: mean relative error of free cell lengths;
  ``val/angle_err``: mean absolute error of free cell angles (degrees);
* ``val/expand_ok``: share of the first ``n_expand`` decoded crystals pyxtal expands;
  ``val/clash_frac``: share of those with an interatomic distance below ``min_distance``.

Flow (``n_expand`` crystals generated with the current EMA flow): ``val/sample_expand_ok``,
and the two figures MCFlow's validator reports too, so both models' curves compare:
``val/dng_struct_validity`` (the share of all samples that pass the structural rule of
:func:`tasks.core.checks.structure_problem`, the evaluation's) and ``val/dng_mean_elements``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from pymatgen.core import Structure

from models.symadit.data import TokenStats, collate_tokens
from models.symadit.model import SymADiT
from models.symadit.sampling import batch_to_tokens, expand_tokens, generate
from models.symadit.symmetrize import symmetrize_coords
from representation.wyckoff_tokens import WyckoffTokens
from tasks.core.checks import closest_pair, structure_problem

if TYPE_CHECKING:
    from models.symadit.autoencoder import WyckoffAutoencoder
    from models.symadit.config import SymADiTConfig, SymADiTValidationConfig


def clashes(structure: Structure, min_distance: float) -> bool:
    """Whether two atoms (periodic images included) are closer than ``min_distance`` Å."""
    return closest_pair(structure.lattice.matrix, structure.frac_coords, min_distance) is not None


@torch.no_grad()
def reconstruction_metrics(
    ae: WyckoffAutoencoder,
    tokens: Sequence[WyckoffTokens],
    batch_size: int = 256,
    n_expand: int = 0,
    min_distance: float = 0.5,
) -> dict[str, float]:
    """Reconstruction quality of ``ae`` on ``tokens`` (see the module docstring)."""
    device = next(ae.parameters()).device
    was_training = ae.training
    ae.eval()
    sums = {k: 0.0 for k in ("elem", "wyck", "crystal", "coord", "len", "ang")}
    counts = {k: 0 for k in sums}
    decoded: list[WyckoffTokens] = []
    for start in range(0, len(tokens), batch_size):
        batch = collate_tokens(tokens[start : start + batch_size]).to(device)
        rec = ae.reconstruct(batch)
        mask = batch.mask
        elem_ok = (rec.elements == batch.elements) | ~mask
        wyck_ok = (rec.wyckoff == batch.wyckoff) | ~mask
        sums["elem"] += float(((rec.elements == batch.elements) & mask).sum())
        sums["wyck"] += float(((rec.wyckoff == batch.wyckoff) & mask).sum())
        counts["elem"] += int(mask.sum())
        counts["wyck"] += int(mask.sum())
        sums["crystal"] += float((elem_ok & wyck_ok).all(dim=1).sum())
        counts["crystal"] += len(batch)
        # free coords of the *true* positions (reconstructed coords projected on them)
        pred = symmetrize_coords(rec.coords.double(), batch.wyckoff).float()
        diff = torch.remainder(pred - batch.coords + 0.5, 1.0) - 0.5
        cm = batch.coord_mask
        sums["coord"] += float(diff.abs()[cm].sum())
        counts["coord"] += int(cm.sum())
        lm = batch.cell_mask
        rel = ((rec.cell[:, :3] - batch.cell[:, :3]).abs() / batch.cell[:, :3])[lm[:, :3]]
        ang = (rec.cell[:, 3:] - batch.cell[:, 3:]).abs()[lm[:, 3:]]
        sums["len"] += float(rel.sum())
        counts["len"] += int(rel.numel())
        sums["ang"] += float(ang.sum())
        counts["ang"] += int(ang.numel())
        if len(decoded) < n_expand:
            decoded.extend(batch_to_tokens(rec.to("cpu"))[: n_expand - len(decoded)])
    ae.train(was_training)
    metrics = {
        "recon_element_acc": sums["elem"] / max(counts["elem"], 1),
        "recon_wyckoff_acc": sums["wyck"] / max(counts["wyck"], 1),
        "recon_crystal_acc": sums["crystal"] / max(counts["crystal"], 1),
        "coord_err": sums["coord"] / max(counts["coord"], 1),
        "length_rel_err": sums["len"] / max(counts["len"], 1),
        "angle_err": sums["ang"] / max(counts["ang"], 1),
    }
    if decoded:
        metrics.update(expansion_metrics(decoded, min_distance, expand_tokens))
    return metrics


def expansion_metrics(
    tokens: Sequence[WyckoffTokens], min_distance: float, expand: Callable
) -> dict[str, float]:
    """Share of crystals that expand, and share (of all) with a distance < ``min_distance``."""
    ok, clash = 0, 0
    for structure, _ in expand(tokens, overlap_tol=0.0):
        if structure is None:
            continue
        ok += 1
        if clashes(structure, min_distance):
            clash += 1
    n = max(len(tokens), 1)
    return {"expand_ok": ok / n, "clash_frac": clash / n}


def autoencoder_validator(
    val_tokens: Sequence[WyckoffTokens], vcfg: SymADiTValidationConfig
) -> Callable[[torch.nn.Module, int], dict[str, float]]:
    """Trainer callback computing :func:`reconstruction_metrics` on the validation set."""

    def validate(model: torch.nn.Module, step: int) -> dict[str, float]:
        return reconstruction_metrics(
            model,  # type: ignore[arg-type]
            val_tokens,
            n_expand=vcfg.n_expand,
            min_distance=vcfg.min_distance,
        )

    return validate


def flow_validator(
    ae: WyckoffAutoencoder, stats: TokenStats, cfg: SymADiTConfig
) -> Callable[[torch.nn.Module, int], dict[str, float]]:
    """Trainer callback: generate ``n_expand`` crystals and measure expansion and clashes."""

    def validate(flow: torch.nn.Module, step: int) -> dict[str, float]:
        model = SymADiT(cfg, stats)
        model.autoencoder = ae
        model.flow = flow  # type: ignore[assignment]
        records = generate(
            model,
            cfg.validation.n_expand,
            seed=cfg.seed,
            steps=min(cfg.sampling.steps, 50),
            progress=False,
        )
        structures = [r.to_structure() for r in records if r.status == "ok"]
        valid = sum(not structure_problem(s) for s in structures)
        n = max(len(records), 1)
        elements = [len(s.composition.elements) for s in structures]
        return {
            "sample_expand_ok": len(structures) / n,
            "dng_struct_validity": valid / n,
            "dng_mean_elements": sum(elements) / len(elements) if elements else float("nan"),
        }

    return validate
