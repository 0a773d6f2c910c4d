"""SymADiT entry points used by ``discovery train/sample --model symadit``.

``train(config, dataset_path, out_dir, resume=False) -> Path``
    Two stages, each a :class:`models.training.Trainer` run with its own directory and
    resumable on its own:

    ``out_dir/autoencoder/``  stage 1 (``latest.pt``, ``best.pt``, ``metrics.jsonl``,
    ``complete.json`` once finished);
    ``out_dir/flow/``  stage 2: the autoencoder (EMA weights of ``autoencoder/latest.pt``,
    or ``best.pt`` with ``ae_checkpoint: best``) is frozen, the training set is encoded
    once, and the latent DiT trains on those latents. If the autoencoder changed since a
    flow checkpoint was written, a resumed flow stage restarts from scratch;
    ``out_dir/symadit.pt``  the sampling checkpoint (both networks' EMA weights, the
    config and the training statistics); ``out_dir/training_summary.json``.

``sample(request) -> list[SampleRecord]``
    Generates ``request.n`` crystals (a :class:`models.contract.SampleRequest`) and writes
    them with :func:`models.sample_output.write_samples`.

:class:`SymADiTModel` puts both behind :class:`models.contract.GenerativeModel`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.contract import FineTune, SampleRequest, TrainedOn, TrainRequest, refuse_options
from models.sample_output import SampleRecord, write_samples
from models.symadit.autoencoder import WyckoffAutoencoder
from models.symadit.config import SymADiTConfig, load_symadit_config
from models.symadit.data import TokenStats, collate_tokens, load_tokens
from models.symadit.flow import LatentBatch, LatentFlow
from models.symadit.model import SymADiT
from models.symadit.sampling import generate
from models.symadit.validation import autoencoder_validator, flow_validator
from models.training.checkpoint import load_checkpoint, model_weights
from models.training.trainer import Trainer, resolve_device
from representation.wyckoff_tokens import WyckoffTokens
from tasks.core.atomic import write_json_atomic
from tasks.core.config import config_hash
from tasks.core.paths import REPO_ROOT

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "symadit.pt"
COMPLETE = "complete.json"


def tokens_hash(tokens: Sequence[WyckoffTokens]) -> str:
    """Content hash of a token dataset (identifies the training data in checkpoints)."""
    digest = hashlib.sha256()
    for t in tokens:
        digest.update(t.to_json().encode())
    return digest.hexdigest()[:16]


def split_tokens(
    tokens: list[WyckoffTokens], cfg: SymADiTConfig
) -> tuple[list[WyckoffTokens], list[WyckoffTokens]]:
    """Deterministic train / validation split (seeded by ``cfg.seed``)."""
    n = len(tokens)
    n_val = min(round(cfg.data.val_fraction * n), cfg.data.max_val)
    if n_val == 0 or n - n_val < 1:
        return list(tokens), []
    perm = np.random.default_rng(cfg.seed).permutation(n)
    val_idx = set(perm[:n_val].tolist())
    train = [t for i, t in enumerate(tokens) if i not in val_idx]
    val = [tokens[i] for i in sorted(val_idx)]
    return train, val


def _collate_tokens(items: list[WyckoffTokens], rng: np.random.Generator) -> Any:
    return collate_tokens(items)


def _collate_latents(items: list[tuple[int, np.ndarray]], rng: np.random.Generator) -> LatentBatch:
    k = max(len(z) for _, z in items)
    d = items[0][1].shape[1]
    z = np.zeros((len(items), k, d), dtype=np.float32)
    mask = np.zeros((len(items), k), dtype=bool)
    for i, (_, zi) in enumerate(items):
        z[i, : len(zi)] = zi
        mask[i, : len(zi)] = True
    return LatentBatch(
        z=torch.from_numpy(z),
        spacegroup=torch.as_tensor([g for g, _ in items], dtype=torch.long),
        mask=torch.from_numpy(mask),
    )


@torch.no_grad()
def encode_dataset(
    ae: WyckoffAutoencoder, tokens: Sequence[WyckoffTokens], batch_size: int = 512
) -> list[tuple[int, np.ndarray]]:
    """Deterministic latents of every crystal: ``[(g, z [K, d_z]), ...]``."""
    ae.eval()
    device = next(ae.parameters()).device
    out: list[tuple[int, np.ndarray]] = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start : start + batch_size]
        batch = collate_tokens(chunk).to(device)
        z = ae.encode(batch).float().cpu().numpy()
        for i, t in enumerate(chunk):
            out.append((int(t.spacegroup), z[i, : t.n_orbits].copy()))
    return out


def _stage_complete(stage_dir: Path, key: dict[str, Any]) -> bool:
    marker = stage_dir / COMPLETE
    if not marker.exists():
        return False
    try:
        data = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return all(data.get(k) == v for k, v in key.items())


def _drop_stale(stage_dir: Path, dataset_hash: str) -> None:
    """Set aside a stage checkpoint trained on other data (for the flow: the latents of
    another autoencoder)."""
    latest = stage_dir / "latest.pt"
    if not latest.exists():
        return
    if load_checkpoint(latest)["dataset_hash"] != dataset_hash:
        log.warning(
            "%s was trained on other data (for the flow: another autoencoder's latents): the "
            "stage restarts (old checkpoint kept as latest.stale.pt)",
            latest,
        )
        latest.replace(stage_dir / "latest.stale.pt")
        (stage_dir / COMPLETE).unlink(missing_ok=True)


def _fit_stage(trainer: Trainer, config_key: str, resume: bool) -> Path:
    """Run one training stage (autoencoder, flow or a fine-tuned flow); returns the path of
    its latest checkpoint.

    A resumed stage whose ``complete.json`` names the same data and settings is skipped; a
    resumed stage whose checkpoint was trained on other data (for the flow: another
    autoencoder's latents) restarts (:func:`_drop_stale`). A finished stage is marked
    complete with its step and time.
    """
    stage_dir = trainer.out_dir
    key = {"dataset_hash": trainer.dataset_hash, "config_hash": config_key}
    if resume and _stage_complete(stage_dir, key):
        log.info("%s stage already complete in %s: skipping", stage_dir.name, stage_dir)
    else:
        if resume:
            _drop_stale(stage_dir, trainer.dataset_hash)
        start = time.perf_counter()
        result = trainer.fit(resume=resume)
        write_json_atomic(
            stage_dir / COMPLETE,
            {
                **key,
                "step": result.step,
                "best": result.best_value,
                "seconds": round(time.perf_counter() - start, 1),
            },
        )
    return stage_dir / "latest.pt"


def _flow_trainer(
    flow: LatentFlow,
    ae: WyckoffAutoencoder,
    latents: tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]],
    stats: TokenStats,
    cfg: SymADiTConfig,
    out: Path,
    dataset_hash: str,
    run_config: dict[str, Any],
) -> Trainer:
    """The latent flow's trainer on ``(train, validation)`` latents of the frozen ``ae``."""
    train_latents, val_latents = latents
    return Trainer(
        flow,
        cfg.flow_trainer,
        out / "flow",
        train_latents,
        _collate_latents,
        val_data=val_latents or None,
        validate=flow_validator(ae, stats, cfg) if cfg.validation.n_expand > 0 else None,
        run_config={"symadit": cfg.model_dump(mode="json"), "stage": "flow", **run_config},
        dataset_hash=dataset_hash,
        extra={"stats": stats.to_dict()},
    )


def _frozen(ae: WyckoffAutoencoder, device: torch.device) -> WyckoffAutoencoder:
    """The autoencoder in eval mode without gradients, on ``device``."""
    for p in ae.parameters():
        p.requires_grad_(False)
    return ae.eval().to(device)


def _encode_splits(
    ae: WyckoffAutoencoder, train: Sequence[WyckoffTokens], val: Sequence[WyckoffTokens]
) -> tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]]]:
    return encode_dataset(ae, train), encode_dataset(ae, val) if val else []


def _save_bundle(
    cfg: SymADiTConfig,
    stats: TokenStats,
    ae_weights: dict[str, torch.Tensor],
    flow_ckpt: dict[str, Any],
    out: Path,
    summary: dict[str, Any],
) -> Path:
    """Write the sampling checkpoint (both networks, EMA flow weights) and its summary."""
    model = SymADiT(cfg, stats)
    model.autoencoder.load_state_dict(ae_weights)
    model.flow.load_state_dict(model_weights(flow_ckpt, use_ema=True))
    summary = {**summary, "flow_step": int(flow_ckpt["step"])}
    path = model.save(out / CHECKPOINT_NAME, extra=summary)
    write_json_atomic(out / "training_summary.json", summary)
    log.info("SymADiT checkpoint written to %s", path)
    return path


def train(
    config: SymADiTConfig | dict[str, Any] | str | Path,
    dataset_path: str | Path,
    out_dir: str | Path,
    resume: bool = False,
) -> Path:
    """Train both SymADiT stages and write the sampling checkpoint.

    Parameters
    ----------
    config
        A :class:`SymADiTConfig`, a dict, a YAML path or a profile name (``tiny``...).
    dataset_path
        A processed dataset (parquet of crystal records with a ``wyckoff`` column) or a
        CSV with a ``cif`` column (tokenized with pyxtal, cached).
    out_dir
        Training directory (see the module docstring).
    resume
        Continue each unfinished stage from its ``latest.pt``; finished stages (with a
        ``complete.json`` for the same config and data) are skipped. A stage that stopped
        on its ``max_time_s`` budget counts as finished; a crashed or killed one does not
        (and gets a fresh ``max_time_s`` budget when resumed).

    Returns
    -------
    Path
        ``out_dir/symadit.pt``.
    """
    cfg = load_symadit_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    cache_dir = cfg.data.cache_dir or (REPO_ROOT / "data" / "cache")
    tokens = load_tokens(dataset_path, n_workers=cfg.data.n_workers, cache_dir=cache_dir)
    if cfg.data.limit is not None:
        tokens = tokens[: cfg.data.limit]
    train_tokens, val_tokens = split_tokens(tokens, cfg)
    stats = TokenStats.from_tokens(train_tokens)
    data_hash = tokens_hash(tokens)
    log.info(
        "SymADiT: %d training / %d validation crystals from %s",
        len(train_tokens),
        len(val_tokens),
        dataset_path,
    )
    write_json_atomic(
        out / "config.json", {"symadit": cfg.model_dump(mode="json"), "dataset": str(dataset_path)}
    )

    # ------------------------------------------------------------------ stage 1
    ae = WyckoffAutoencoder(cfg.autoencoder, stats)
    ae_trainer = Trainer(
        ae,
        cfg.ae_trainer,
        out / "autoencoder",
        train_tokens,
        _collate_tokens,
        val_data=val_tokens or None,
        validate=autoencoder_validator(val_tokens, cfg.validation) if val_tokens else None,
        run_config={"symadit": cfg.model_dump(mode="json"), "stage": "autoencoder"},
        dataset_hash=data_hash,
        extra={"stats": stats.to_dict()},
    )
    _fit_stage(ae_trainer, config_hash(cfg.autoencoder) + config_hash(cfg.ae_trainer), resume)
    ae_ckpt_path = out / "autoencoder" / ("best.pt" if cfg.ae_checkpoint == "best" else "latest.pt")
    if not ae_ckpt_path.exists():
        ae_ckpt_path = out / "autoencoder" / "latest.pt"
    ae_ckpt = load_checkpoint(ae_ckpt_path, map_location="cpu")
    ae_weights = model_weights(ae_ckpt, use_ema=True)
    ae.cpu().load_state_dict(ae_weights)

    # ------------------------------------------------------------------ stage 2
    ae = _frozen(ae, resolve_device(cfg.flow_trainer.device))
    latents = _encode_splits(ae, train_tokens, val_tokens)
    all_z = torch.as_tensor(np.concatenate([z for _, z in latents[0]]))
    flow = LatentFlow(cfg.flow, cfg.autoencoder.latent_dim)
    flow.set_latent_stats(all_z.mean(0), all_z.std(0))
    ae_hash = hashlib.sha256(
        b"".join(v.cpu().numpy().tobytes() for v in ae.state_dict().values())
    ).hexdigest()[:16]
    flow_trainer = _flow_trainer(
        flow, ae, latents, stats, cfg, out, f"{data_hash}-{ae_hash}",
        {"autoencoder_checkpoint": str(ae_ckpt_path)},
    )  # fmt: skip
    flow_key = config_hash(cfg.flow) + config_hash(cfg.flow_trainer)
    flow_ckpt = load_checkpoint(_fit_stage(flow_trainer, flow_key, resume), map_location="cpu")

    # ------------------------------------------------------------------ bundle
    summary = {
        "dataset": str(dataset_path),
        "dataset_hash": data_hash,
        **TrainedOn(n_train=len(train_tokens)).as_extra(),
        "n_val": len(val_tokens),
        "autoencoder_checkpoint": str(ae_ckpt_path),
        "autoencoder_step": int(ae_ckpt["step"]),
        "n_params_autoencoder": sum(p.numel() for p in ae.parameters()),
        "n_params_flow": sum(p.numel() for p in flow.parameters()),
    }
    return _save_bundle(cfg, stats, ae_weights, flow_ckpt, out, summary)


def finetune_stats(base: TokenStats, tokens: Sequence[WyckoffTokens]) -> TokenStats:
    """Sampling statistics of a fine-tuning set: p(g) and p(K | g) of the new set, while the
    cell normalization and the element mask stay those the autoencoder was trained with."""
    new = TokenStats.from_tokens(tokens)
    return dataclasses.replace(
        new,
        cell_mean=base.cell_mean,
        cell_std=base.cell_std,
        element_counts=base.element_counts,
        max_orbits=max(base.max_orbits, new.max_orbits),
    )


def finetune(
    config: SymADiTConfig | dict[str, Any] | str | Path,
    dataset_path: str | Path,
    out_dir: str | Path,
    budget: FineTune,
    resume: bool = False,
) -> Path:
    """Fine-tune a SymADiT checkpoint's latent flow on a new dataset.

    The autoencoder of ``budget.init_from`` stays frozen (its latent space is what the flow
    models), the new set is encoded with it, and the flow continues from its EMA weights
    with a fresh optimizer under ``budget``; the profile ``config`` supplies the other flow
    training settings. p(g) and p(K | g) come from the new set (:func:`finetune_stats`).
    Resumable like :func:`train` (``out_dir/flow/latest.pt``).

    Returns
    -------
    Path
        ``out_dir/symadit.pt``.
    """
    profile = load_symadit_config(config)
    base = SymADiT.load(budget.init_from)
    cfg = base.config.model_copy(update={"flow_trainer": budget.apply(profile.flow_trainer)})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    cache_dir = cfg.data.cache_dir or (REPO_ROOT / "data" / "cache")
    tokens = load_tokens(dataset_path, n_workers=profile.data.n_workers, cache_dir=cache_dir)
    train_tokens, val_tokens = split_tokens(tokens, cfg)
    stats = finetune_stats(base.stats, train_tokens)
    ae = _frozen(base.autoencoder, resolve_device(cfg.flow_trainer.device))
    latents = _encode_splits(ae, train_tokens, val_tokens)
    origin = hashlib.sha256(str(budget.init_from).encode()).hexdigest()[:12]
    data_hash = f"{tokens_hash(tokens)}-from-{origin}"
    trainer = _flow_trainer(
        base.flow.train(), ae, latents, stats, cfg, out, data_hash,
        {"init_from": str(budget.init_from)},
    )  # fmt: skip
    latest = _fit_stage(trainer, budget.model_dump_json() + config_hash(cfg.flow), resume)
    flow_ckpt = load_checkpoint(latest, map_location="cpu")
    summary = {
        "dataset": str(dataset_path),
        "dataset_hash": data_hash,
        **TrainedOn(n_train=len(train_tokens), init_from=str(budget.init_from)).as_extra(),
        "n_val": len(val_tokens),
    }
    return _save_bundle(cfg, stats, ae.cpu().state_dict(), flow_ckpt, out, summary)


def sample(request: SampleRequest) -> list[SampleRecord]:
    """Generate ``request.n`` crystals de novo (written to ``request.out_dir`` when given).

    Parameters
    ----------
    request
        What to sample (:class:`models.contract.SampleRequest`, task ``dng``): ``n``
        samples (failed expansions are kept as ``failed`` records), ``seed`` (same seed,
        same samples; part of every id ``symadit-<seed>-<index>``), ``steps``, ``guidance``
        (classifier-free guidance weight ``w``, 1 = none) and ``batch_size`` (defaults: the
        checkpoint's sampling config), ``spacegroups`` (cycled over the samples; ``None``:
        the training distribution) and ``device``.
    """
    if request.task != "dng":
        raise ValueError(f"SymADiT only generates de novo (task 'dng'), not {request.task!r}")
    if request.n is None:
        raise ValueError("SymADiT sampling needs n >= 1")
    dev = resolve_device(request.device)
    model = SymADiT.load(request.checkpoint, map_location="cpu").to(dev)
    records = generate(
        model,
        request.n,
        seed=request.seed,
        steps=request.steps,
        guidance=request.guidance,
        spacegroups=request.spacegroups,
        batch_size=request.batch_size,
    )
    if request.out_dir is not None:
        write_samples(request.out_dir, records)
    log.info("%d of %d SymADiT samples ok", sum(r.status == "ok" for r in records), request.n)
    return records


class SymADiTModel:
    """SymADiT behind the :class:`models.registry.GenerativeModel` contract (de novo only)."""

    name = "symadit"
    tasks = frozenset({"dng"})

    def train(self, request: TrainRequest) -> Path:
        """Train both stages (see :func:`train`), or fine-tune the flow (:func:`finetune`)."""
        if request.finetune is not None:
            return finetune(
                request.profile,
                request.dataset,
                request.out_dir,
                request.finetune,
                resume=request.resume,
            )
        return train(request.profile, request.dataset, request.out_dir, resume=request.resume)

    def sample(self, request: SampleRequest) -> list[SampleRecord]:
        """De novo samples (see :func:`sample`); CSP / ATG options are refused."""
        refuse_options(self.name, request, ("compositions", "structures", "k", "mask_sites"))
        return sample(request)
