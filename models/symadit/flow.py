"""Stage 2 of SymADiT: flow matching in the autoencoder's latent space.

``z_1`` are the (standardized) latents of a training crystal, ``z_0 ~ N(0, I)`` and
``z_t = t·z_1 + (1 − t)·z_0``. The shared :class:`models.nn.DiT` predicts the clean ``ẑ_1``
from ``z_t`` (concatenated with a self-conditioning input) under adaLN conditioning on
``TimeEmb(t) + Emb_sg(g)``; the loss is ``MSE(ẑ_1, z_1)`` over real tokens. There are no
positional embeddings: the orbit tokens form a set.

* Self-conditioning: with probability ``self_cond_prob`` (0.5) a first no-grad pass
  produces ``ẑ_1`` that is fed as the extra input of the trained pass; otherwise zeros.
* Classifier-free guidance: the space-group label is replaced by the null label 0 with
  probability ``p_uncond``; sampling combines ``ẑ_u + w·(ẑ_c − ẑ_u)``.
* Sampling integrates the ODE with ``steps`` Euler steps of the velocity
  ``(ẑ_1 − z_t)/(1 − t)`` from t = 0 to 1.

Latent standardization: the AE latents are shifted and scaled per dimension by their
training-set mean and std (buffers ``latent_mean`` / ``latent_std``, saved with the weights),
so the flow always sees unit-scale targets whatever the AE learned.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from models.nn.dit import DiT
from models.nn.embeddings import TimestepEmbedder
from models.symadit.config import FlowConfig
from models.symadit.data import NUM_SPACEGROUPS


@dataclass
class LatentBatch:
    """Padded latents: ``z`` [B, N, d_z] (raw AE scale), ``spacegroup`` [B], ``mask`` [B, N]."""

    z: torch.Tensor
    spacegroup: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> LatentBatch:
        """Move every tensor to ``device``."""
        return LatentBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def loss_weights(t: torch.Tensor, weighting: str, time_clip: float = 0.9) -> torch.Tensor:
    """Per-crystal weight of the squared ``ẑ_1`` error at flow times ``t`` ``[B]``.

    ``x1``: 1 everywhere. ``velocity``: ``1 / (1 − min(t, time_clip))²``: with
    ``z_t = t z_1 + (1 − t) z_0`` the velocity error is ``(ẑ_1 − z_1) / (1 − t)``, so the
    weighted loss is the velocity MSE, clipped where ``1 − t`` vanishes.
    """
    if weighting == "x1":
        return torch.ones_like(t)
    if weighting == "velocity":
        return 1.0 / (1.0 - t.clamp(max=time_clip)) ** 2
    raise ValueError(f"unknown loss weighting {weighting!r}")


class LatentFlow(nn.Module):
    """DiT denoiser over latent orbit tokens, conditioned on time and space group.

    Parameters
    ----------
    config
        Architecture / training settings.
    latent_dim
        ``d_z`` of the autoencoder.
    """

    latent_mean: torch.Tensor
    latent_std: torch.Tensor

    def __init__(self, config: FlowConfig, latent_dim: int) -> None:
        super().__init__()
        self.config = config
        self.latent_dim = latent_dim
        h = config.hidden
        self.in_proj = nn.Linear(2 * latent_dim, h)
        self.time_emb = TimestepEmbedder(h)
        self.sg_emb = nn.Embedding(NUM_SPACEGROUPS, h)  # label 0 = unconditional
        self.dit = DiT(h, config.depth, config.heads, config.mlp_ratio, config.dropout)
        self.out_proj = nn.Linear(h, latent_dim)
        nn.init.normal_(self.sg_emb.weight, std=0.02)
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))

    # ------------------------------------------------------------------ normalization
    def set_latent_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store the per-dimension mean / std used to standardize AE latents."""
        self.latent_mean.copy_(mean.to(self.latent_mean))
        self.latent_std.copy_(std.clamp_min(1e-4).to(self.latent_std))

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """AE latents → standardized flow space."""
        return (z - self.latent_mean) / self.latent_std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Standardized flow space → AE latents."""
        return z * self.latent_std + self.latent_mean

    # ------------------------------------------------------------------ network
    def forward(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        spacegroup: torch.Tensor,
        mask: torch.Tensor,
        self_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict clean standardized latents ``[B, N, d_z]``.

        ``spacegroup`` 0 means "no label" (the unconditional branch of CFG).
        """
        if self_cond is None:
            self_cond = torch.zeros_like(z_t)
        x = self.in_proj(torch.cat([z_t, self_cond], dim=-1))
        cond = self.time_emb(t) + self.sg_emb(spacegroup)
        out = self.out_proj(self.dit(x, cond, mask)).float()
        return out * mask[..., None].to(out.dtype)

    # ------------------------------------------------------------------ training
    def _sample_time(
        self, n: int, generator: torch.Generator | None, device: torch.device
    ) -> torch.Tensor:
        gdev = generator.device if generator is not None else device
        if self.config.time_sampling == "logit_normal":
            t = torch.sigmoid(torch.randn(n, generator=generator, device=gdev))
        else:
            t = torch.rand(n, generator=generator, device=gdev)
        return t.to(device)

    def loss(
        self, batch: LatentBatch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Flow-matching loss on real tokens (the trainer's interface).

        ``MSE(ẑ_1, z_1)``, or with ``loss_weighting: velocity`` each crystal's squared error
        times :func:`loss_weights` (the velocity MSE).
        """
        cfg = self.config
        device = batch.z.device
        gdev = generator.device if generator is not None else device
        b = batch.z.shape[0]
        mask = batch.mask
        m = mask[..., None].to(batch.z.dtype)
        z1 = self.normalize(batch.z) * m
        z0 = torch.randn(z1.shape, generator=generator, device=gdev).to(device) * m
        t = self._sample_time(b, generator, device)
        z_t = t[:, None, None] * z1 + (1 - t[:, None, None]) * z0
        drop = torch.rand(b, generator=generator, device=gdev).to(device) < cfg.p_uncond
        labels = torch.where(drop, torch.zeros_like(batch.spacegroup), batch.spacegroup)
        self_cond = torch.zeros_like(z1)
        if cfg.self_cond_prob > 0:
            use_sc = torch.rand(b, generator=generator, device=gdev).to(device) < cfg.self_cond_prob
            if bool(use_sc.any()):
                with torch.no_grad():
                    first = self(z_t, t, labels, mask).detach()
                self_cond = torch.where(use_sc[:, None, None], first.to(z1.dtype), self_cond)
        pred = self(z_t, t, labels, mask, self_cond)
        err = ((pred - z1.float()) ** 2).sum(-1)  # [B, N]
        weights = loss_weights(t, cfg.loss_weighting, cfg.time_clip)
        loss = (err * weights[:, None] * mask).sum() / (mask.sum() * self.latent_dim).clamp_min(1)
        return loss, {"mse": float(loss.detach())}

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        spacegroup: torch.Tensor,
        mask: torch.Tensor,
        steps: int = 100,
        guidance: float = 1.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        autocast: bool = False,
    ) -> torch.Tensor:
        """Integrate the latent ODE; returns AE-scale latents ``[B, N, d_z]`` (0 on padding).

        Parameters
        ----------
        spacegroup, mask
            ``[B]`` groups (1..230) and ``[B, N]`` token masks (N = orbits per crystal).
        steps
            Euler steps from t = 0 to t = 1.
        guidance
            CFG scale ``w``: 1 = purely conditional, 0 = unconditional, > 1 amplifies ``g``.
        noise
            Initial ``z_0`` ``[B, N, d_z]`` (drawn from ``generator`` if omitted).
        autocast
            Run the network under bf16 autocast (CUDA only).
        """
        if steps < 1:
            raise ValueError("steps must be >= 1")
        device = mask.device
        b, n = mask.shape
        m = mask[..., None].float()
        if noise is None:
            gdev = generator.device if generator is not None else device
            noise = torch.randn((b, n, self.latent_dim), generator=generator, device=gdev)
        z = noise.to(device).float() * m
        guided = guidance != 1.0
        labels = spacegroup
        if guided:
            labels = torch.cat([spacegroup, torch.zeros_like(spacegroup)])
            mask2 = torch.cat([mask, mask])
        sc = torch.zeros(((2 if guided else 1) * b, n, self.latent_dim), device=device)
        ctx = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if autocast and device.type == "cuda"
            else torch.autocast(device_type="cpu", enabled=False)
        )
        for i in range(steps):
            t_val = i / steps
            if guided:
                z_in = torch.cat([z, z])
                t = torch.full((2 * b,), t_val, device=device)
                with ctx:
                    pred = self(z_in, t, labels, mask2, sc).float()
                sc = pred
                cond, uncond = pred[:b], pred[b:]
                x1 = uncond + guidance * (cond - uncond)
            else:
                t = torch.full((b,), t_val, device=device)
                with ctx:
                    x1 = self(z, t, labels, mask, sc).float()
                sc = x1
            dt = 1.0 / steps
            z = (z + dt * (x1 - z) / (1.0 - t_val)) * m
        return self.denormalize(z) * m
