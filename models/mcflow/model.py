"""The MCFlow network: a DiT over atoms with separate type and structure times."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.mcflow.config import FlowConfig, NetworkConfig
from models.mcflow.data import NUM_ELEMENTS, MCFlowBatch, Priors
from models.mcflow.flows import (
    angles_to_units,
    coord_velocity_loss,
    interpolate_coords,
    linear,
    linear_velocity_loss,
    mask_types,
    masked_type_loss,
    sample_angles_prior,
    sample_coords_prior,
    sample_lengths_prior,
    units_to_angles,
    wrap,
)
from models.nn.dit import DiT
from models.nn.embeddings import TimestepEmbedder, sinusoidal_positions
from models.nn.mlp import MLP

#: Pair distances are read by Gaussians centred on [0, DISTANCE_RANGE] Å.
DISTANCE_RANGE = 6.0


@dataclass
class MCFlowOutput:
    """Network predictions of the clean crystal (all float32).

    Attributes
    ----------
    type_logits
        ``[B, N, NUM_ELEMENTS]`` logits of the clean element (never-seen elements −inf).
    coord_disp
        ``[B, N, 3]`` predicted displacement ``wrap(F̂_1 − F_s)``.
    lengths
        ``[B, 3]`` predicted clean ``length / N^(1/3)``.
    angle_units
        ``[B, 3]`` predicted clean angles in units of :func:`flows.angles_to_units`.
    """

    type_logits: torch.Tensor
    coord_disp: torch.Tensor
    lengths: torch.Tensor
    angle_units: torch.Tensor


class MCFlowNet(nn.Module):
    """Token = Emb(A) + Lin(F features) + Lin(lengths) + Lin(angles) + sinusoidal position.

    Coordinates enter through the periodic features ``[sin 2πkF, cos 2πkF]``, k = 1..K (a
    linear map of them), so a shift by a lattice vector does not change the input. With
    ``network.geometry: pairs`` every attention layer also reads the features of each
    pair's offset ``F_j − F_i`` at ``pair_frequencies`` (directly, or through an edge MLP
    of width ``edge_hidden``; see :class:`models.nn.attention.SelfAttention`), and with
    ``pair_distances`` R > 0 Gaussians of each pair's minimum-image distance in Å under the
    current cell (:meth:`pair_distances`), so attention can tell near atoms from far ones.
    Lengths enter as the standardized log ``(log L − μ)/σ``. Conditioning
    ``c = TimeEmb_A(t) + TimeEmb_X(s)`` drives the DiT's adaptive layer norms. Per-token
    heads give element logits and coordinate displacements; the cell head reads the mean
    over real atoms.

    Parameters
    ----------
    network, flow
        Sizes and loss settings.
    priors
        Fitted training-set priors (stored as buffers, so they travel with the weights).
    """

    coord_frequencies: torch.Tensor
    pair_frequencies: torch.Tensor
    distance_centers: torch.Tensor
    images: torch.Tensor
    length_mu: torch.Tensor
    length_sigma: torch.Tensor
    allowed_types: torch.Tensor

    def __init__(self, network: NetworkConfig, flow: FlowConfig, priors: Priors) -> None:
        super().__init__()
        h = network.hidden
        self.flow = flow
        self.type_emb = nn.Embedding(NUM_ELEMENTS + 1, h)
        self.register_buffer(
            "coord_frequencies",
            torch.arange(1, network.coord_frequencies + 1, dtype=torch.float32),
            persistent=False,
        )
        self.coord_in = nn.Linear(6 * network.coord_frequencies, h)
        self.length_in = nn.Linear(3, h)
        self.angle_in = nn.Linear(3, h)
        self.time_types = TimestepEmbedder(h)
        self.time_struct = TimestepEmbedder(h)
        self.register_buffer(
            "pair_frequencies",
            torch.arange(1, network.pair_sinusoid_dim // 6 + 1, dtype=torch.float32)
            if network.pair_dim
            else torch.zeros(0),
            persistent=False,
        )
        self.register_buffer(
            "distance_centers",
            torch.linspace(0.0, DISTANCE_RANGE, network.pair_distances),
            persistent=False,
        )
        self.register_buffer(
            "images", torch.cartesian_prod(*[torch.arange(-1.0, 2.0)] * 3), persistent=False
        )
        self.dit = DiT(
            h,
            network.depth,
            network.heads,
            network.mlp_ratio,
            network.dropout,
            network.pair_dim,
            network.edge_hidden if network.pair_dim else 0,
        )
        self.type_head = nn.Linear(h, NUM_ELEMENTS)
        self.coord_head = nn.Linear(h, 3)
        self.cell_head = MLP(h, h, 6)
        for head in (self.type_head, self.coord_head, self.cell_head.fc2):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.register_buffer("length_mu", torch.tensor(priors.length_mu, dtype=torch.float32))
        self.register_buffer("length_sigma", torch.tensor(priors.length_sigma, dtype=torch.float32))
        self.register_buffer("allowed_types", torch.from_numpy(priors.allowed_types()))

    @staticmethod
    def _periodic_features(frac: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
        """``[..., 3]`` fractional values → ``[..., 6K]`` ``[sin 2πkf, cos 2πkf]``, k = 1..K."""
        phases = (2 * math.pi * frac[..., None] * frequencies).flatten(-2)
        return torch.cat([torch.sin(phases), torch.cos(phases)], dim=-1)

    def pair_distances(
        self,
        frac: torch.Tensor,
        lengths: torch.Tensor,
        angle_units: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """``[B, N, N]`` minimum-image distances in Å between atoms under the given cell.

        The shortest of the 27 images ``wrap(F_j − F_i) + n``, ``n ∈ {−1, 0, 1}³`` (exact
        for Niggli-reduced cells); ``lengths`` are per ``N^(1/3)`` as everywhere in
        MCFlow. The metric tensor is used directly, so a noisy cell whose angles cannot
        close gives a distance of 0, not a NaN.
        """
        n = mask.sum(1).clamp(min=1).to(frac.dtype)
        abc = lengths * n[:, None] ** (1.0 / 3.0)
        cos = torch.cos(torch.deg2rad(units_to_angles(angle_units)))  # α, β, γ
        a, b, c = abc.unbind(-1)
        metric = torch.stack(
            [
                torch.stack([a * a, a * b * cos[:, 2], a * c * cos[:, 1]], -1),
                torch.stack([a * b * cos[:, 2], b * b, b * c * cos[:, 0]], -1),
                torch.stack([a * c * cos[:, 1], b * c * cos[:, 0], c * c], -1),
            ],
            -2,
        )
        offsets = wrap(frac[:, None, :, :] - frac[:, :, None, :])[..., None, :] + self.images
        squared = torch.einsum("bijkx,bxy,bijky->bijk", offsets, metric, offsets)
        return squared.amin(-1).clamp(min=0.0).sqrt()

    def _pair_features(
        self,
        frac: torch.Tensor,
        lengths: torch.Tensor,
        angle_units: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor | None:
        if not len(self.pair_frequencies):
            return None
        offsets = frac[:, None, :, :] - frac[:, :, None, :]
        pair = self._periodic_features(offsets, self.pair_frequencies)
        if not len(self.distance_centers):
            return pair
        distance = self.pair_distances(frac, lengths, angle_units, mask)
        width = DISTANCE_RANGE / max(len(self.distance_centers) - 1, 1)
        gauss = torch.exp(-(((distance[..., None] - self.distance_centers) / width) ** 2))
        return torch.cat([pair, gauss.to(pair.dtype)], dim=-1)

    def forward(
        self,
        types: torch.Tensor,
        frac: torch.Tensor,
        lengths: torch.Tensor,
        angle_units: torch.Tensor,
        t: torch.Tensor,
        s: torch.Tensor,
        mask: torch.Tensor,
    ) -> MCFlowOutput:
        """Predict the clean crystal from a noisy one.

        Parameters
        ----------
        types
            ``[B, N]`` element indices or ``MASK_TOKEN``.
        frac
            ``[B, N, 3]`` fractional coordinates.
        lengths
            ``[B, 3]`` ``length / N^(1/3)`` (positive).
        angle_units
            ``[B, 3]`` angles in units (see :func:`flows.angles_to_units`).
        t, s
            ``[B]`` type and structure times in ``[0, 1]``.
        mask
            ``[B, N]`` bool, True for real atoms.
        """
        N = types.shape[1]
        log_len = (torch.log(lengths.clamp(min=1e-4)) - self.length_mu) / self.length_sigma
        cell = self.length_in(log_len) + self.angle_in(angle_units)
        x = (
            self.type_emb(types)
            + self.coord_in(self._periodic_features(frac, self.coord_frequencies))
            + cell[:, None, :]
            + sinusoidal_positions(N, self.type_emb.embedding_dim, types.device)[None]
        )
        cond = self.time_types(t) + self.time_struct(s)
        h = self.dit(x, cond, mask, self._pair_features(frac, lengths, angle_units, mask))
        logits = self.type_head(h).float()
        logits = logits.masked_fill(~self.allowed_types, float("-inf"))
        weights = mask.to(h.dtype).unsqueeze(-1)
        pooled = (h * weights).sum(1) / weights.sum(1).clamp(min=1)
        cell_out = self.cell_head(pooled).float()
        return MCFlowOutput(
            type_logits=logits,
            coord_disp=self.coord_head(h).float(),
            lengths=torch.exp(self.length_mu + self.length_sigma * cell_out[:, :3]),
            angle_units=cell_out[:, 3:],
        )

    def loss(
        self, batch: MCFlowBatch, generator: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss with independent ``t, s ~ U[0, 1]`` (see :mod:`models.mcflow.flows`)."""
        mask = batch.mask
        B = mask.shape[0]
        device = mask.device
        t = torch.rand(B, generator=generator, device=device)
        s = torch.rand(B, generator=generator, device=device)
        types_t = mask_types(batch.types, t, mask, generator)
        f0 = sample_coords_prior(batch.frac.shape, generator, device)
        f_s = interpolate_coords(f0, batch.frac, s)
        l1 = batch.lengths
        l_s = linear(sample_lengths_prior(self.length_mu, self.length_sigma, B, generator), l1, s)
        u1 = angles_to_units(batch.angles)
        u_s = linear(sample_angles_prior(B, generator, device), u1, s)
        out = self(types_t, f_s, l_s, u_s, t, s, mask)
        clip = self.flow.time_clip
        parts = {
            "loss_types": masked_type_loss(out.type_logits, batch.types, types_t, mask, t, clip),
            "loss_coords": coord_velocity_loss(
                out.coord_disp, f_s, batch.frac, mask, s, clip, self.flow.translation_free
            ),
            "loss_lengths": linear_velocity_loss(out.lengths, l1, s, clip),
            "loss_angles": linear_velocity_loss(out.angle_units, u1, s, clip),
        }
        w = self.flow
        total = (
            w.w_types * parts["loss_types"]
            + w.w_coords * parts["loss_coords"]
            + w.w_lengths * parts["loss_lengths"]
            + w.w_angles * parts["loss_angles"]
        )
        return total, {k: v.detach() for k, v in parts.items()}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(np.prod(p.shape) for p in model.parameters() if p.requires_grad))
