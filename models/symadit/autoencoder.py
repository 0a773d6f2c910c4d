"""Stage 1 of SymADiT: the Wyckoff-orbit autoencoder.

Encoder (per orbit, then self-attention across orbits, no positional embeddings)::

    h_k = Emb_atom(a_k) + Emb_wyck(w_k) + MLP_x([x_k, m_x]) + Emb_sg(g) + MLP_l([l, m_l])
    z_k = B · tanh(Linear(Transformer(h)_k) / B)

Decoder (Transformer over the K latent tokens, also given ``g``) with per-token element,
Wyckoff (masked to the positions of ``g``) and coordinate heads and a cell head on the
masked mean of the tokens. The outputs are symmetrized deterministically
(:func:`models.symadit.symmetrize.symmetrize_coords` / ``tie_cell``) and the loss sees
free parameters only.

Choices the paper leaves open (documented here and in ``configs/symadit/*.yaml``):

* **Saturating bound** ``z = B·tanh(z/B)`` with ``B = 3`` by default. It is the identity for
  ``|z| ≲ 1`` and caps the latent at ``±B``, so the encoder cannot make the (unregularized)
  latent arbitrarily large; with the flow's standard-normal prior a bound of 3 keeps the
  latents within ~3 σ of a unit-scale prior. The flow stage additionally standardizes the
  latents with their training-set mean and std (stored in the checkpoint).
* **Latent noise**: Gaussian noise of std ``latent_noise`` (default 0.05) is added to the
  bounded latent during training only, a cheap stand-in for the KL term that makes the
  decoder tolerant to the small errors of the flow's samples.
* **Coordinates** enter the encoder periodically as ``[sin 2πx, cos 2πx] · m_x`` plus the
  mask ``m_x``; constrained coordinates are zeroed so the encoder sees free DOFs only.
* **Cell** enters as the normalized ``(log a, log b, log c, α, β, γ)`` (training-set
  mean/std over free entries) times ``m_l``, plus ``m_l``.
* **Loss weights**: elements 1, Wyckoff 1, coords 10 (weighted up as the paper says), cell 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.nn.mlp import MLP
from models.nn.transformer import TransformerEncoder
from models.symadit.config import AutoencoderConfig
from models.symadit.data import NUM_ELEMENTS, NUM_SPACEGROUPS, TokenBatch, TokenStats
from models.symadit.symmetrize import cell_free_mask, symmetrize_coords, tie_cell
from representation.wyckoff_vocab import wyckoff_vocabulary


@dataclass
class DecoderOutput:
    """Raw decoder outputs for a batch ``[B, N]``.

    The Wyckoff head is evaluated only on the positions of each crystal's space group
    (at most 27 per group instead of all 1731, which is the paper's "−∞ outside g" mask
    without computing the masked entries): ``wyckoff_local`` ``[B, N, P]`` are the logits
    of the group's positions ``wyckoff_index`` ``[B, P]`` (global indices; ``-inf`` logits on
    padding columns, whose index is clamped). ``coords`` are unsymmetrized (compare them
    periodically); ``cell`` is in normalized feature space
    (see :meth:`TokenStats.normalize_cell`).
    """

    element_logits: torch.Tensor
    wyckoff_local: torch.Tensor
    wyckoff_index: torch.Tensor
    coords: torch.Tensor
    cell: torch.Tensor

    @property
    def wyckoff_logits(self) -> torch.Tensor:
        """``[B, N, V]`` logits over the whole vocabulary, ``-inf`` outside the group."""
        b, n, _ = self.wyckoff_local.shape
        size = wyckoff_vocabulary().size
        valid = torch.isfinite(self.wyckoff_local[:, :1, :]).expand(b, n, -1)
        index = self.wyckoff_index[:, None, :].expand(b, n, -1)
        index = torch.where(valid, index, torch.full_like(index, size))  # padding → dummy column
        full = torch.full((b, n, size + 1), float("-inf"), device=self.wyckoff_local.device)
        return full.scatter(2, index, self.wyckoff_local)[..., :size]

    def wyckoff_argmax(self) -> torch.Tensor:
        """``[B, N]`` global index of the most likely position of each token."""
        local = self.wyckoff_local.argmax(-1)
        return torch.gather(self.wyckoff_index, 1, local)


@lru_cache(maxsize=8)
def _group_tables(device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    vocab = wyckoff_vocabulary()
    counts = np.bincount(vocab.spacegroup, minlength=NUM_SPACEGROUPS)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    if not np.all(np.diff(vocab.spacegroup) >= 0):
        raise RuntimeError("the Wyckoff vocabulary is not ordered by space group")
    return (
        torch.as_tensor(starts, device=device),
        torch.as_tensor(counts, device=device),
        int(counts.max()),
    )


def group_positions(spacegroup: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Global indices ``[B, P]`` of each group's Wyckoff positions and their validity mask.

    The vocabulary stores each group's positions contiguously (``a`` first), so position
    ``j`` of group ``g`` is ``start[g] + j``; ``P`` is the largest count (27, group 47).
    Padding columns have a clamped index and ``valid = False``. Group 0 (CFG's null label)
    has no positions.
    """
    starts, counts, width = _group_tables(str(spacegroup.device))
    cols = torch.arange(width, device=spacegroup.device)
    valid = cols[None, :] < counts[spacegroup][:, None]
    index = (starts[spacegroup][:, None] + cols[None, :]).clamp(max=wyckoff_vocabulary().size - 1)
    return index, valid


def _randn(
    shape: torch.Size, generator: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """Standard normal noise from ``generator`` (on the generator's device), cast like ``like``."""
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device).to(like.device, like.dtype)


def periodic_features(coords: torch.Tensor, coord_mask: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` coords + mask → ``[..., 9]`` = ``[sin 2πx·m, cos 2πx·m, m]``."""
    m = coord_mask.to(coords.dtype)
    angle = 2 * math.pi * coords
    return torch.cat([torch.sin(angle) * m, torch.cos(angle) * m, m], dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over entries where ``mask`` (broadcastable) is True; 0 if none."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class WyckoffAutoencoder(nn.Module):
    """Encoder/decoder over Wyckoff-orbit tokens (see the module docstring).

    Parameters
    ----------
    config
        Architecture and loss settings.
    stats
        Training-set statistics (cell normalization, allowed elements).
    """

    element_allowed: torch.Tensor

    def __init__(self, config: AutoencoderConfig, stats: TokenStats) -> None:
        super().__init__()
        self.config = config
        self.stats = stats
        vocab = wyckoff_vocabulary()
        h = config.hidden
        self.n_wyckoff = vocab.size
        # ---- encoder
        self.emb_atom = nn.Embedding(NUM_ELEMENTS, h)
        self.emb_wyck = nn.Embedding(vocab.size, h)
        self.emb_sg_enc = nn.Embedding(NUM_SPACEGROUPS, h)
        self.mlp_x = MLP(9, h, h)
        self.mlp_l = MLP(12, h, h)
        self.encoder = TransformerEncoder(
            h, config.encoder_layers, config.heads, config.mlp_ratio, config.dropout
        )
        self.to_latent = nn.Linear(h, config.latent_dim)
        # ---- decoder
        self.from_latent = nn.Linear(config.latent_dim, h)
        self.emb_sg_dec = nn.Embedding(NUM_SPACEGROUPS, h)
        self.decoder = TransformerEncoder(
            h, config.decoder_layers, config.heads, config.mlp_ratio, config.dropout
        )
        self.head_element = nn.Linear(h, NUM_ELEMENTS)
        self.head_wyckoff = nn.Linear(h, vocab.size)
        self.head_coords = MLP(h, h, 3)
        self.head_cell = MLP(h, h, 6)
        self.register_buffer(
            "element_allowed",
            torch.as_tensor(stats.element_mask, dtype=torch.bool),
            persistent=False,
        )

    # ------------------------------------------------------------------ encoder
    def encode(self, batch: TokenBatch) -> torch.Tensor:
        """Bounded latents ``[B, N, d_z]`` (deterministic; zeros on padding)."""
        cell_feats = self.stats.normalize_cell(batch.cell.float())
        cm = batch.cell_mask.to(cell_feats.dtype)
        cell_in = torch.cat([cell_feats * cm, cm], dim=-1)
        h = (
            self.emb_atom(batch.elements)
            + self.emb_wyck(batch.wyckoff)
            + self.mlp_x(periodic_features(batch.coords.float(), batch.coord_mask))
            + (self.emb_sg_enc(batch.spacegroup) + self.mlp_l(cell_in))[:, None, :]
        )
        h = self.encoder(h, batch.mask)
        z = self.to_latent(h)
        bound = self.config.latent_bound
        z = bound * torch.tanh(z / bound)
        return z * batch.mask[..., None].to(z.dtype)

    # ------------------------------------------------------------------ decoder
    def decode(
        self, z: torch.Tensor, spacegroup: torch.Tensor, mask: torch.Tensor
    ) -> DecoderOutput:
        """Decode latents ``[B, N, d_z]`` of crystals of group ``spacegroup`` ``[B]``."""
        h = self.from_latent(z) + self.emb_sg_dec(spacegroup)[:, None, :]
        h = self.decoder(h, mask)
        m = mask[..., None].to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        index, valid = group_positions(spacegroup)
        weight = self.head_wyckoff.weight[index]  # [B, P, H]
        bias = self.head_wyckoff.bias[index]  # [B, P]
        wyck = (
            torch.einsum("bnh,bph->bnp", h, weight.to(h.dtype)) + bias[:, None, :].to(h.dtype)
        ).float()
        wyck = wyck.masked_fill(~valid[:, None, :], float("-inf"))
        elem = self.head_element(h).float()
        # finite fill: a validation crystal may hold an element never seen in training
        elem = elem.masked_fill(~self.element_allowed, -1e9)
        return DecoderOutput(
            element_logits=elem,
            wyckoff_local=wyck,
            wyckoff_index=index,
            coords=self.head_coords(h).float(),
            cell=self.head_cell(pooled).float(),
        )

    def forward(self, batch: TokenBatch) -> tuple[torch.Tensor, DecoderOutput]:
        """Deterministic encode and decode: ``(latents, decoder outputs)``."""
        z = self.encode(batch)
        return z, self.decode(z, batch.spacegroup, batch.mask)

    # ------------------------------------------------------------------ training
    def augment(self, batch: TokenBatch, generator: torch.Generator | None = None) -> TokenBatch:
        """Jitter only free coordinates and free cell parameters (then re-symmetrize)."""
        cfg = self.config
        coords, cell = batch.coords, batch.cell
        if cfg.aug_coord_std > 0:
            eps = _randn(coords.shape, generator, coords)
            noise = cfg.aug_coord_std * eps * batch.coord_mask.to(coords.dtype)
            coords = symmetrize_coords(coords + noise, batch.wyckoff)
            coords = torch.where(batch.mask[..., None], coords, batch.coords)
        if cfg.aug_cell_std > 0:
            feats = self.stats.normalize_cell(cell.float())
            eps = _randn(feats.shape, generator, feats)
            feats = feats + cfg.aug_cell_std * eps * batch.cell_mask.to(feats.dtype)
            cell = tie_cell(self.stats.denormalize_cell(feats), batch.spacegroup).to(
                batch.cell.dtype
            )
        return batch.replace(coords=coords, cell=cell)

    def loss(
        self, batch: TokenBatch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Weighted reconstruction loss on free parameters (the trainer's interface).

        In training mode the batch is augmented (free DOFs jittered) and latent noise is
        added; in eval mode the pass is deterministic. Returns ``(loss, metrics)``.
        """
        cfg = self.config
        if self.training:
            batch = self.augment(batch, generator)
        z = self.encode(batch)
        if self.training and cfg.latent_noise > 0:
            z = z + cfg.latent_noise * _randn(z.shape, generator, z)
        out = self.decode(z, batch.spacegroup, batch.mask)
        terms = reconstruction_terms(out, batch, self.stats)
        loss = (
            cfg.w_element * terms["loss_element"]
            + cfg.w_wyckoff * terms["loss_wyckoff"]
            + cfg.w_coord * terms["loss_coord"]
            + cfg.w_cell * terms["loss_cell"]
        )
        parts = {k: float(v.detach()) for k, v in terms.items()}
        return loss, parts

    # ------------------------------------------------------------------ reconstruction
    @torch.no_grad()
    def reconstruct(self, batch: TokenBatch) -> TokenBatch:
        """Deterministic encode → decode → symmetrize with argmax heads (for validation)."""
        z = self.encode(batch)
        out = self.decode(z, batch.spacegroup, batch.mask)
        return symmetrize_output(out, batch.spacegroup, batch.mask, self.stats)


def reconstruction_terms(
    out: DecoderOutput, batch: TokenBatch, stats: TokenStats
) -> dict[str, torch.Tensor]:
    """Loss terms on free parameters only, plus accuracies (as tensors)."""
    mask = batch.mask
    elem_ce = F.cross_entropy(out.element_logits[mask], batch.elements[mask])
    local_target = batch.wyckoff - group_positions(batch.spacegroup)[0][:, :1]
    wyck_ce = F.cross_entropy(out.wyckoff_local[mask], local_target[mask])
    diff = out.coords - batch.coords.float()
    coord_loss = masked_mean(1.0 - torch.cos(2 * math.pi * diff), batch.coord_mask)
    target_cell = stats.normalize_cell(batch.cell.float())
    cell_loss = masked_mean((out.cell - target_cell) ** 2, batch.cell_mask)
    with torch.no_grad():
        elem_acc = (out.element_logits.argmax(-1) == batch.elements)[mask].float().mean()
        wyck_acc = (out.wyckoff_local.argmax(-1) == local_target)[mask].float().mean()
    return {
        "loss_element": elem_ce,
        "loss_wyckoff": wyck_ce,
        "loss_coord": coord_loss,
        "loss_cell": cell_loss,
        "acc_element": elem_acc,
        "acc_wyckoff": wyck_acc,
    }


def symmetrize_output(
    out: DecoderOutput,
    spacegroup: torch.Tensor,
    mask: torch.Tensor,
    stats: TokenStats,
    wyckoff: torch.Tensor | None = None,
    elements: torch.Tensor | None = None,
) -> TokenBatch:
    """Turn decoder outputs into a symmetric :class:`TokenBatch`.

    Wyckoff positions and elements default to the argmax of their heads (pass the
    constrained choices of :mod:`models.symadit.sampling` instead when generating);
    coords are projected onto the chosen positions and the cell is tied to the crystal
    system, so every free parameter is exact and every constrained one follows from them.
    """
    if wyckoff is None:
        wyckoff = out.wyckoff_argmax()
    if elements is None:
        elements = out.element_logits.argmax(-1)
    wyckoff = torch.where(mask, wyckoff, torch.zeros_like(wyckoff))
    elements = torch.where(mask, elements, torch.zeros_like(elements))
    coords = symmetrize_coords(torch.remainder(out.coords.double(), 1.0), wyckoff).float()
    cell = stats.denormalize_cell(out.cell.double())
    cell = torch.cat([cell[:, :3].clamp(1.0, 200.0), cell[:, 3:].clamp(20.0, 160.0)], dim=-1)
    cell = tie_cell(cell, spacegroup).float()
    vocab_mask = torch.as_tensor(wyckoff_vocabulary().coord_mask, device=wyckoff.device)
    return TokenBatch(
        spacegroup=spacegroup,
        cell=cell,
        cell_mask=cell_free_mask(spacegroup),
        wyckoff=wyckoff,
        elements=elements,
        coords=coords * mask[..., None],
        coord_mask=vocab_mask[wyckoff] & mask[..., None],
        mask=mask,
    )
