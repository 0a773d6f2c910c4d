"""MCFlow entry points: :func:`train` and :func:`sample` (called by ``discovery`` and flows)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Composition, Element, Structure

from models.contract import FineTune, SampleRequest, TrainedOn, TrainRequest, refuse_options
from models.mcflow.config import MCFlowConfig, resolve_config
from models.mcflow.data import (
    NUM_ELEMENTS,
    CrystalItem,
    Priors,
    collate,
    fit_priors,
    item_from_structure,
    items_from_records,
    items_hash,
)
from models.mcflow.model import MCFlowNet, count_parameters
from models.mcflow.sampling import (
    Generated,
    Guidance,
    SampleSpec,
    Task,
    generate,
    to_structure,
)
from models.mcflow.validation import validity_callback
from models.sample_output import SampleRecord, sample_id, write_samples
from models.training.checkpoint import load_checkpoint, model_weights
from models.training.trainer import Trainer, resolve_device
from representation.atom_order import electronegativity, mcflow_order
from tasks.core.atomic import write_json_atomic
from tasks.core.records import read_records
from tasks.core.structure_io import read_structures

log = logging.getLogger(__name__)

MODEL = "mcflow"


def load_dataset_items(dataset_path: str | Path, max_atoms: int) -> list[CrystalItem]:
    """Items from an ingested dataset (``dataset.parquet`` or the folder holding it)."""
    path = Path(dataset_path)
    if path.is_dir():
        path = path / "dataset.parquet"
    if path.suffix != ".parquet":
        raise ValueError(
            f"{dataset_path}: expected an ingested dataset.parquet (run `discovery ingest` first)"
        )
    items = items_from_records(read_records(path), max_atoms=max_atoms)
    if not items:
        raise ValueError(f"{path}: no usable crystals")
    return items


def split_items(
    items: list[CrystalItem], val_fraction: float, seed: int
) -> tuple[list[CrystalItem], list[CrystalItem]]:
    """Deterministic train/validation split (validation = ``val_fraction`` of the items)."""
    n_val = round(len(items) * val_fraction)
    if n_val == 0 or n_val >= len(items):
        return items, []
    order = np.random.default_rng(seed).permutation(len(items))
    val = set(order[:n_val].tolist())
    return [it for i, it in enumerate(items) if i not in val], [items[i] for i in sorted(val)]


def train(
    config: MCFlowConfig | str | Path,
    dataset_path: str | Path,
    out_dir: str | Path,
    resume: bool = False,
    finetune: FineTune | None = None,
) -> Path:
    """Train MCFlow on an ingested dataset (from scratch, or fine-tune a checkpoint).

    Parameters
    ----------
    config
        :class:`MCFlowConfig`, a YAML file or a profile name (``tiny``, ``cpu-small``,
        ``S``, ``B``, ``L``).
    dataset_path
        ``dataset.parquet`` from ingestion (or its folder).
    out_dir
        Receives ``latest.pt``, ``best.pt``, ``metrics.jsonl`` and ``config.json``.
    resume
        Continue exactly from ``out_dir/latest.pt``.
    finetune
        Start from this checkpoint's (EMA) weights, network and priors, with a fresh
        optimizer and the given budget; the profile supplies the other training settings.

    Returns
    -------
    Path
        ``best.pt`` (lowest validation loss) if validation ran, else ``latest.pt``.
    """
    cfg = resolve_config(config)
    out = Path(out_dir)
    base: MCFlowNet | None = None
    if finetune is not None:
        base, base_cfg, priors = load_model(finetune.init_from, "cpu")
        cfg = base_cfg.model_copy(update={"train": finetune.apply(cfg.train)})
    items = load_dataset_items(dataset_path, cfg.data.max_atoms)
    train_items, val_items = split_items(items, cfg.data.val_fraction, cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    if base is None:
        priors = fit_priors(train_items)
        model = MCFlowNet(cfg.network, cfg.flow, priors)
    else:
        model = base.train()
    log.info(
        "MCFlow: %d parameters, %d train / %d val crystals",
        count_parameters(model),
        len(train_items),
        len(val_items),
    )
    dataset_hash = items_hash(train_items)
    write_json_atomic(
        out / "config.json",
        {"mcflow": cfg.model_dump(mode="json"), "dataset": str(dataset_path), "hash": dataset_hash},
    )
    trainer = Trainer(
        model,
        cfg.train,
        out,
        train_items,
        partial(collate, augment=cfg.data.augment),
        val_data=val_items or None,
        validate=validity_callback(priors, cfg.validation) if cfg.validation.n_samples else None,
        run_config={"model": MODEL, "mcflow": cfg.model_dump(mode="json")},
        dataset_hash=dataset_hash,
        extra={
            "priors": priors.model_dump(mode="json"),
            **TrainedOn(
                n_train=len(train_items),
                init_from=str(finetune.init_from) if finetune else None,
            ).as_extra(),
            "n_params": count_parameters(model),
        },
    )
    result = trainer.fit(resume=resume)
    return result.best or result.latest


def load_model(
    checkpoint: str | Path, device: str = "auto"
) -> tuple[MCFlowNet, MCFlowConfig, Priors]:
    """Rebuild the network from a checkpoint with its EMA weights, in eval mode."""
    ckpt = load_checkpoint(checkpoint, map_location="cpu")
    if ckpt["config"].get("model") != MODEL:
        raise ValueError(f"{checkpoint} is not an MCFlow checkpoint")
    cfg = MCFlowConfig.model_validate(ckpt["config"]["mcflow"])
    priors = Priors.model_validate(ckpt["extra"]["priors"])
    model = MCFlowNet(cfg.network, cfg.flow, priors)
    model.load_state_dict(model_weights(ckpt, use_ema=True))
    return model.to(resolve_device(device)).eval(), cfg, priors


def composition_types(composition: Composition | str) -> np.ndarray:
    """Element indices of a composition in MCFlow order (electronegativity, then Z).

    The composition is taken literally: ``Li4PbO4`` gives 9 atoms, ``Li8Pb2O8`` 18.
    """
    comp = Composition(composition)
    types: list[int] = []
    for el in sorted(comp.elements, key=lambda e: (electronegativity(e.symbol), e.Z)):
        amount = comp[el]
        if abs(amount - round(amount)) > 1e-6:
            raise ValueError(f"{comp.formula}: fractional amount of {el}")
        types.extend([el.Z - 1] * round(amount))
    if not types or max(types) >= NUM_ELEMENTS:
        raise ValueError(f"{comp.formula}: empty or an element beyond Z={NUM_ELEMENTS}")
    return np.asarray(types, dtype=np.int64)


def _order_permutation(original: Structure, ordered: Structure) -> np.ndarray:
    """``perm`` with ``ordered[j] is original[perm[j]]`` (same site objects' coordinates)."""
    index = {
        (site.species_string, *np.round(site.frac_coords, 8).tolist()): i
        for i, site in enumerate(original)
    }
    return np.array(
        [index[(s.species_string, *np.round(s.frac_coords, 8).tolist())] for s in ordered]
    )


@dataclass(frozen=True)
class _Job:
    """One requested sample: what to generate, or why it cannot be; its metadata; and for
    ATG the input structure with the permutation from MCFlow order to input order."""

    spec: SampleSpec | None
    extra: dict[str, Any]
    reason: str = ""
    atg_input: tuple[Structure, np.ndarray] | None = None


def _csp_jobs(request: SampleRequest) -> list[_Job]:
    k = request.k
    if request.compositions is not None:
        sources: list[tuple[str, Composition | str | None, str]] = [
            (c, c, "") for c in request.compositions
        ]
    elif request.structures is not None:
        sources = [
            (ident, s.composition if s is not None else None, reason)
            for ident, s, reason in read_structures(request.structures)
        ]
    else:
        raise ValueError("CSP needs compositions or structures")
    jobs: list[_Job] = []
    for ident, comp, reason in sources:
        spec: SampleSpec | None = None
        try:
            if comp is None:
                raise ValueError(reason or "unreadable input")
            types = composition_types(comp)
            spec = SampleSpec(len(types), types)
        except ValueError as err:
            reason = str(err)
        formula = Composition(comp).formula if spec is not None else str(comp)
        for j in range(k):
            extra = {"source_id": ident, "composition": formula, "k_index": j}
            jobs.append(_Job(spec, extra, reason))
    return jobs


def _atg_jobs(request: SampleRequest) -> list[_Job]:
    if request.structures is None:
        raise ValueError("ATG needs structures")
    k, mask_sites = request.k, request.mask_sites
    entries = read_structures(request.structures)
    if mask_sites is not None and len(mask_sites) != len(entries):
        raise ValueError("mask_sites needs one list of site indices per structure")
    jobs: list[_Job] = []
    for i, (ident, structure, reason) in enumerate(entries):
        spec: SampleSpec | None = None
        ctx = None
        try:
            if structure is None:
                raise ValueError(reason or "unreadable input")
            order = mcflow_order(structure)
            item = item_from_structure(
                ident, order.structure, order.orbit_index.tolist(), "".join(order.wyckoff_letters)
            )
            perm = _order_permutation(structure, order.structure)
            regenerate = np.ones(len(structure), dtype=bool)
            if mask_sites is not None:
                regenerate[:] = False
                regenerate[np.asarray(mask_sites[i], dtype=int)] = True
            known = np.where(regenerate[perm], -1, item.types)
            spec = SampleSpec(item.n_atoms, known, item.frac, item.lengths, item.angles)
            ctx = (structure, perm)
        except (ValueError, KeyError, IndexError) as err:
            reason = f"cannot prepare structure: {err}"
        extra: dict[str, Any] = {"source_id": ident}
        if mask_sites is not None:
            extra["masked_sites"] = [int(x) for x in mask_sites[i]]
        jobs += [_Job(spec, {**extra, "k_index": j}, reason, ctx) for j in range(k)]
    return jobs


def _built(crystal: Generated, job: _Job, task: Task) -> Structure:
    """The structure of a generated crystal (ATG: the input with the new elements)."""
    if task != "atg":
        return to_structure(crystal)
    assert job.atg_input is not None  # every runnable ATG job carries its input
    structure, perm = job.atg_input
    species = [site.specie for site in structure]
    for j, z in enumerate(crystal.types):
        species[perm[j]] = Element.from_Z(int(z) + 1)
    return Structure(structure.lattice, species, structure.frac_coords)


def _guidance(request: SampleRequest, cfg: MCFlowConfig) -> Guidance | None:
    """Noisy guidance of a request: its weight ``w`` (1 = none), else the config's rule."""
    if request.task == "dng":
        if request.guidance not in (None, 1.0):
            raise ValueError("MCFlow's noisy guidance applies to CSP and ATG, not de novo")
        return None
    if request.guidance is not None:
        weight = request.guidance
    elif cfg.sample.guidance == "on" or (cfg.sample.guidance == "auto" and request.k == 1):
        weight = cfg.sample.omega
    else:
        weight = 1.0
    return None if weight == 1.0 else Guidance(weight, cfg.sample.sigma)


def _jobs(request: SampleRequest, priors: Priors) -> list[_Job]:
    """The requested samples in request order (unbuildable ones with their reason)."""
    if request.task == "dng":
        if not request.n:
            raise ValueError("DNG needs n > 0")
        sizes = priors.sample_n_atoms(request.n, np.random.default_rng(request.seed))
        return [_Job(SampleSpec(int(size)), {}) for size in sizes]
    if request.task == "csp":
        return _csp_jobs(request)
    return _atg_jobs(request)


@torch.no_grad()
def sample(request: SampleRequest, anneal_slope: float | None = None) -> list[SampleRecord]:
    """Generate crystals with a trained MCFlow checkpoint.

    Parameters
    ----------
    request
        What to sample (:class:`models.contract.SampleRequest`): ``dng`` needs ``n``; ``csp``
        ``compositions`` (taken literally as the cell content) or ``structures`` (a file or
        folder readable by :func:`tasks.core.structure_io.read_structures`, whose
        compositions are used); ``atg`` ``structures`` and optionally ``mask_sites`` (per
        structure, the site indices in input order to regenerate). ``guidance`` is the noisy
        guidance weight (``None``: the config's rule, ``auto`` = on iff ``k`` = 1);
        ``steps`` and ``batch_size`` default to the config's. Every sample id is
        ``mcflow-<seed>-<index>``.
    anneal_slope
        Coordinate anti-annealing slope (default: the config's ``sample.coord_anneal_slope``);
        an MCFlow setting, for sweeps.

    Returns
    -------
    list[SampleRecord]
        One record per sample (failed ones with their reason), in request order; written
        to ``request.out_dir`` when given.
    """
    model, cfg, priors = load_model(request.checkpoint, request.device)
    if anneal_slope is None:
        anneal_slope = cfg.sample.coord_anneal_slope
    task, seed = request.task, request.seed
    steps = request.steps or cfg.sample.steps
    guide = _guidance(request, cfg)
    weight = guide.omega if guide is not None else 1.0
    meta = {"steps": steps, "guidance": weight, "k": request.k, "anneal_slope": anneal_slope}
    jobs = _jobs(request, priors)
    runnable = {i: job.spec for i, job in enumerate(jobs) if job.spec is not None}
    crystals = generate(
        model,
        list(runnable.values()),
        task,
        steps,
        seed,
        batch_size=request.batch_size or cfg.sample.batch_size,
        guidance=guide,
        anneal_slope=anneal_slope,
        progress=True,
    )
    generated = dict(zip(runnable, crystals, strict=True))
    records = []
    for i, job in enumerate(jobs):
        out, reason = None, job.reason
        if job.spec is not None:
            try:
                out = _built(generated[i], job, task)
            except ValueError as err:
                reason = str(err)
        ident, info = sample_id(MODEL, seed, i), {**meta, **job.extra}
        records.append(SampleRecord.of(ident, MODEL, task, out, reason, extra=info))
    if request.out_dir is not None:
        write_samples(request.out_dir, records)
    n_ok = sum(r.status == "ok" for r in records)
    log.info("MCFlow %s: %d of %d samples ok", task, n_ok, len(records))
    return records


class MCFlowModel:
    """MCFlow behind the :class:`models.registry.GenerativeModel` contract (DNG, CSP, ATG)."""

    name = "mcflow"
    tasks = frozenset({"dng", "csp", "atg"})

    def train(self, request: TrainRequest) -> Path:
        """Train or fine-tune (see :func:`train`)."""
        return train(
            request.profile,
            request.dataset,
            request.out_dir,
            resume=request.resume,
            finetune=request.finetune,
        )

    def sample(self, request: SampleRequest) -> list[SampleRecord]:
        """Samples of any task (see :func:`sample`); SymADiT's space groups are refused."""
        refuse_options(self.name, request, ("spacegroups",))
        return sample(request)
