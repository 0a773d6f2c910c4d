"""Validation during training: structural validity and chemistry of a few de novo samples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from models.mcflow.config import ValidationConfig
from models.mcflow.data import Priors
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
