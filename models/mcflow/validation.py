"""Validation of a trained MCFlow: de novo validity during training, and the coordinate
velocity loss at fixed structure times (a diagnostic of what the network learned)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from models.mcflow.config import ValidationConfig
from models.mcflow.data import CrystalItem, Priors, collate
from models.mcflow.flows import (
    angles_to_units,
    coord_velocity_loss,
    interpolate_coords,
    sample_coords_prior,
)
from models.mcflow.model import MCFlowNet
from models.mcflow.sampling import SampleSpec, generate, to_structure
from tasks.core.checks import structure_problem


def dng_validity(
    model: MCFlowNet, priors: Priors, n_samples: int, steps: int, seed: int
) -> dict[str, float]:
    """Sample ``n_samples`` crystals de novo: the share that build and that are valid, and
    the mean number of distinct elements per crystal (the data's chemistry: MP-20 has 2.97)."""
    sizes = priors.sample_n_atoms(n_samples, np.random.default_rng(seed))
    crystals = generate(model, [SampleSpec(int(n)) for n in sizes], "dng", steps, seed)
    built, valid = 0, 0
    for crystal in crystals:
        try:
            structure = to_structure(crystal)
        except ValueError:
            continue
        built += 1
        valid += not structure_problem(structure)  # the evaluation's structural rule
    elements = [len(np.unique(crystal.types)) for crystal in crystals]
    return {
        "dng_build_rate": built / n_samples,
        "dng_struct_validity": valid / n_samples,
        "dng_mean_elements": float(np.mean(elements)) if elements else float("nan"),
    }


def validity_callback(
    priors: Priors, config: ValidationConfig
) -> Callable[[nn.Module, int], dict[str, float]]:
    """A :class:`models.training.Trainer` ``validate`` callback measuring DNG validity."""

    def validate(model: nn.Module, step: int) -> dict[str, float]:
        assert isinstance(model, MCFlowNet)
        return dng_validity(model, priors, config.n_samples, config.steps, config.seed)

    return validate


@torch.no_grad()
def coord_loss_by_time(
    model: MCFlowNet,
    items: Sequence[CrystalItem],
    times: Sequence[float],
    seed: int = 1,
    batch_size: int = 128,
) -> dict[str, dict[str, float]]:
    """The training's coordinate velocity loss at fixed structure times ``s``, types known.

    Parameters
    ----------
    model
        A trained network (eval mode).
    items
        Crystals to measure on (held-out ones for a fair figure).
    times
        Structure times; ``1 − s`` is clipped at 0.01 (not the training's 0.1), so late
        times are not down-weighted.
    seed
        Seeds the coordinate prior and the augmentation; the same seed, the same figures.
    batch_size
        Crystals per forward pass.

    Returns
    -------
    dict
        Per time (``str(s)``): ``full`` (the loss as trained), ``free`` (each crystal's mean
        displacement, a translation, removed from the error) and ``zero_free`` (``free`` of
        a zero prediction: the figure to beat).
    """
    result = {}
    for s_value in times:
        gen = torch.Generator().manual_seed(seed)
        full, free, zero = [], [], []
        for start in range(0, len(items), batch_size):
            batch = collate(
                list(items[start : start + batch_size]),
                np.random.default_rng(seed + start),
                augment=True,
            )
            n = batch.mask.shape[0]
            s, t = torch.full((n,), float(s_value)), torch.ones(n)
            f_s = interpolate_coords(
                sample_coords_prior(batch.frac.shape, gen, batch.frac.device), batch.frac, s
            )
            out = model(
                batch.types, f_s, batch.lengths, angles_to_units(batch.angles), t, s, batch.mask
            )
            args = (f_s, batch.frac, batch.mask, s, 0.99)
            full.append(coord_velocity_loss(out.coord_disp, *args).item())
            free.append(coord_velocity_loss(out.coord_disp, *args, True).item())
            zero.append(coord_velocity_loss(torch.zeros_like(out.coord_disp), *args, True).item())
        result[str(s_value)] = {
            "full": float(np.mean(full)),
            "free": float(np.mean(free)),
            "zero_free": float(np.mean(zero)),
        }
    return result
