"""The project's one checkpoint format, written atomically.

A checkpoint is a ``torch.save`` dict with these keys (all loadable with
``torch.load(weights_only=True)``):

``format`` (int), ``model`` (state dict), ``ema`` (:meth:`EMA.state_dict` or None),
``optimizer``, ``scheduler`` (state dicts or None), ``step``, ``epoch`` (ints),
``rng`` (python / numpy / torch / cuda generator states), ``config`` (JSON-able dict:
the model and trainer configs and anything the model needs to be rebuilt),
``dataset_hash`` (str), ``best`` (the best validation value so far or None),
``extra`` (JSON-able dict, e.g. MCFlow's priors).

A training directory keeps ``latest.pt`` (overwritten every ``ckpt_every`` steps) and
``best.pt`` (the best validation value). Both are written to a temporary file in the same
directory and renamed into place, so a crash never leaves a corrupt file under either name.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tasks.core.atomic import atomic_write

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LATEST = "latest.pt"
BEST = "best.pt"


def capture_rng_state() -> dict[str, Any]:
    """Global RNG states of python, numpy, torch and (if present) every CUDA device."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"]).astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (CUDA states are skipped without a GPU)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    nps = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": nps["bit_generator"],
            "state": {"key": nps["key"].numpy().astype(np.uint32), "pos": nps["pos"]},
            "has_gauss": nps["has_gauss"],
            "gauss": nps["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (see the module docstring) to ``path``."""
    payload = {"format": CHECKPOINT_FORMAT, **payload}
    out = atomic_write(path, lambda tmp: torch.save(payload, tmp))
    log.debug("wrote checkpoint %s (step %s)", out, payload.get("step"))
    return out


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Parameters
    ----------
    path
        A checkpoint file, or a training directory (its ``latest.pt`` is used; ``best.pt``
        if there is no latest).
    map_location
        Device for the loaded tensors.
    """
    path = Path(path)
    if path.is_dir():
        path = path / LATEST if (path / LATEST).exists() else path / BEST
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {ckpt.get('format')!r}")
    return ckpt


def model_weights(ckpt: dict[str, Any], use_ema: bool = True) -> dict[str, torch.Tensor]:
    """The model state dict of a checkpoint, with EMA weights swapped in when available."""
    state = dict(ckpt["model"])
    ema = ckpt.get("ema")
    if use_ema and ema:
        for name, value in ema["shadow"].items():
            state[name] = value.to(state[name].dtype)
    return state
