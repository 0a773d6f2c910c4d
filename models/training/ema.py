"""Exponential moving average of a model's trainable parameters."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class EMA:
    """Shadow copy of the trainable parameters, updated as ``s ← d·s + (1 − d)·p``.

    Frozen parameters (``requires_grad=False``, e.g. a frozen autoencoder inside a flow
    model) are not tracked: they never change, so their EMA is themselves.

    Parameters
    ----------
    model
        The model whose parameters are averaged.
    decay
        Target decay ``d``.
    warmup
        If True the effective decay is ``min(d, (1 + n) / (10 + n))`` after ``n`` updates,
        so early averages are not dominated by the random initialization.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {
            name: p.detach().clone().float()
            for name, p in model.named_parameters()
            if p.requires_grad
        }

    def current_decay(self) -> float:
        """Decay used by the next :meth:`update`."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow one step towards the model's current parameters."""
        d = self.current_decay()
        params = dict(model.named_parameters())
        current = [params[name].detach().float() for name in self.shadow]
        torch._foreach_lerp_(list(self.shadow.values()), current, 1.0 - d)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's tracked parameters with the shadow values."""
        for name, p in model.named_parameters():
            if name in self.shadow:
                p.copy_(self.shadow[name].to(p.dtype))

    @contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the EMA weights into ``model`` (e.g. for validation)."""
        backup = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.shadow}
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if name in backup:
                        p.copy_(backup[name])

    def state_dict(self) -> dict[str, Any]:
        """Serializable state (tensors and ints only, loadable with ``weights_only=True``)."""
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; the tracked parameter names must match."""
        shadow = state["shadow"]
        assert isinstance(shadow, dict)
        missing = set(self.shadow) ^ set(shadow)
        if missing:
            raise KeyError(f"EMA state does not match the model's parameters: {sorted(missing)}")
        device = next(iter(self.shadow.values())).device if self.shadow else "cpu"
        self.shadow = {k: v.to(device).float() for k, v in shadow.items()}
        self.num_updates = int(state["num_updates"])
        self.decay = float(state["decay"])
