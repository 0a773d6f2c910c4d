"""The four MCFlow probability paths (types, coords, lengths, angles) and their losses.

Conventions: ``t`` is the atom-type time, ``s`` the structure time; both run from 0
(noise) to 1 (data).

- Types: masked discrete flow. ``A_t``: each real token is clean with probability ``t``,
  else MASK. Loss: cross entropy on masked tokens weighted by ``1 / (1 − t)``.
- Coordinates: flow on the 3-torus. ``F_0 ~ U[0,1)^3``,
  ``F_s = F_0 + s·wrap(F_1 − F_0) mod 1``; the network predicts the displacement
  ``d̂ = wrap(F̂_1 − F_s)``, the velocity is ``d̂ / (1 − s)``.
- Lengths (``length / N^(1/3)``): ``L_0 ~ LogNormal(μ, σ)``, linear path, velocity
  ``(L̂_1 − L_s) / (1 − s)``.
- Angles, in units ``u = (angle − 90°) / 30°``: ``u_0 ~ U[−1, 1]`` (60–120°), linear path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.mcflow.data import MASK_TOKEN

ANGLE_CENTER = 90.0
ANGLE_HALF_RANGE = 30.0


def wrap(d: torch.Tensor) -> torch.Tensor:
    """Wrap a fractional difference into ``[−0.5, 0.5)`` (the torus logarithm)."""
    return torch.remainder(d + 0.5, 1.0) - 0.5


def angles_to_units(angles_deg: torch.Tensor) -> torch.Tensor:
    """Degrees → units where the prior ``U[60°, 120°]`` is ``U[−1, 1]``."""
    return (angles_deg - ANGLE_CENTER) / ANGLE_HALF_RANGE


def units_to_angles(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`angles_to_units`."""
    return u * ANGLE_HALF_RANGE + ANGLE_CENTER


def mask_types(
    types: torch.Tensor, t: torch.Tensor, mask: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Corrupt clean types to time ``t`` ([B]): keep each real token with prob ``t``."""
    keep = torch.rand(types.shape, generator=generator, device=types.device) < t[:, None]
    return torch.where(keep & mask, types, torch.full_like(types, MASK_TOKEN))


def sample_coords_prior(
    shape: torch.Size, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Uniform fractional coordinates on the torus."""
    return torch.rand(shape, generator=generator, device=device)


def interpolate_coords(f0: torch.Tensor, f1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Geodesic on the torus from ``f0`` to ``f1`` at time ``s`` ([B])."""
    return torch.remainder(f0 + s[:, None, None] * wrap(f1 - f0), 1.0)


def sample_lengths_prior(
    mu: torch.Tensor, sigma: torch.Tensor, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """``[batch, 3]`` draws of ``length / N^(1/3)`` from the LogNormal prior."""
    z = torch.randn((batch, 3), generator=generator, device=mu.device)
    return torch.exp(mu + sigma * z)


def sample_angles_prior(
    batch: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """``[batch, 3]`` angle units uniform in ``[−1, 1]``."""
    return torch.rand((batch, 3), generator=generator, device=device) * 2 - 1


def linear(x0: torch.Tensor, x1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Linear path ``(1 − s)·x0 + s·x1`` with per-sample ``s`` ([B])."""
    return (1 - s[:, None]) * x0 + s[:, None] * x1


def masked_type_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    corrupted: torch.Tensor,
    mask: torch.Tensor,
    t: torch.Tensor,
    clip: float,
) -> torch.Tensor:
    """Masked-token cross entropy weighted by ``1/(1 − min(t, clip))``, mean over real atoms."""
    selected = (corrupted == MASK_TOKEN) & mask
    scale = (1.0 / (1.0 - t.clamp(max=clip)))[:, None].expand_as(target)[selected]
    ce = F.cross_entropy(logits.float()[selected], target[selected], reduction="none")
    return (ce * scale).sum() / mask.sum()


def remove_mean_translation(disp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Subtract each crystal's mean displacement over its real atoms (``[B, N, 3]``).

    A common shift of all atoms is a translation of the crystal, which changes nothing:
    with ``flow.translation_free`` the coordinate flow is trained and integrated without it.
    """
    weights = mask.to(disp.dtype).unsqueeze(-1)
    mean = (disp * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp(min=1)
    return (disp - mean) * weights


def coord_velocity_loss(
    disp_pred: torch.Tensor,
    f_s: torch.Tensor,
    f1: torch.Tensor,
    mask: torch.Tensor,
    s: torch.Tensor,
    clip: float,
    translation_free: bool = False,
) -> torch.Tensor:
    """``‖v̂ − v‖²`` on the torus (mean over real atoms and axes), ``1 − s`` clipped.

    With ``translation_free`` the error's mean over atoms (a global translation) is removed
    first, so only relative displacements are learned.
    """
    target = wrap(f1 - f_s)
    scale = 1.0 / (1.0 - s.clamp(max=clip))
    diff = disp_pred.float() - target
    if translation_free:
        diff = remove_mean_translation(diff, mask)
    err = (diff * scale[:, None, None]) ** 2
    return (err.mean(-1) * mask).sum() / mask.sum()


def linear_velocity_loss(
    pred1: torch.Tensor, x1: torch.Tensor, s: torch.Tensor, clip: float
) -> torch.Tensor:
    """MSE between velocities ``(x̂_1 − x_s)/(1 − s)`` and ``(x_1 − x_s)/(1 − s)`` (``[B, 3]``).

    The ``x_s`` terms cancel, so only the predicted and true endpoints are needed.
    """
    scale = 1.0 / (1.0 - s.clamp(max=clip))
    return (((pred1.float() - x1) * scale[:, None]) ** 2).mean()
