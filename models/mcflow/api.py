"""MCFlow entry points: :func:`train` and :func:`sample` (called by ``discovery`` and flows)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
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
StructureInput = Sequence[Structure] | Sequence[tuple[str, Structure]] | str | Path


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


def _structures(structures: StructureInput) -> list[tuple[str, Structure | None, str]]:
    if isinstance(structures, str | Path):
        return read_structures(structures)
    out: list[tuple[str, Structure | None, str]] = []
    for i, entry in enumerate(structures):
        if isinstance(entry, Structure):
            out.append((f"input-{i}", entry, ""))
        else:
            ident, structure = entry
            assert isinstance(structure, Structure), f"entry {i}: expected (id, Structure)"
            out.append((str(ident), structure, ""))
    return out


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


def _csp_jobs(
    compositions: Sequence[Composition | str] | None,
    structures: StructureInput | None,
    k: int,
) -> list[_Job]:
    if compositions is not None:
        sources: list[tuple[str, Composition | str | None, str]] = [
            (str(c), c, "") for c in compositions
        ]
    elif structures is not None:
        sources = [
            (ident, s.composition if s is not None else None, reason)
            for ident, s, reason in _structures(structures)
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


def _atg_jobs(
    structures: StructureInput | None, mask_sites: Sequence[Sequence[int]] | None, k: int
) -> list[_Job]:
    if structures is None:
        raise ValueError("ATG needs structures")
    entries = _structures(structures)
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


@torch.no_grad()
def sample(
    checkpoint: str | Path,
    task: Task,
    n: int | None = None,
    compositions: Sequence[Composition | str] | None = None,
    structures: StructureInput | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    k: int = 1,
    mask_sites: Sequence[Sequence[int]] | None = None,
    guidance: bool | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    anneal_slope: float | None = None,
) -> list[SampleRecord]:
    """Generate crystals with a trained MCFlow checkpoint.

    Parameters
    ----------
    checkpoint
        A ``.pt`` file or a training directory.
    task
        ``dng`` (needs ``n``), ``csp`` (needs ``compositions``, or ``structures`` whose
        compositions are used, e.g. a test split) or ``atg`` (needs ``structures``).
    n
        Number of de novo samples.
    compositions
        Formulas or compositions for CSP, taken literally as the cell content.
    structures
        Structures (or ``(id, structure)`` pairs, or a file/folder readable by
        :func:`tasks.core.structure_io.read_structures`).
    out_dir
        If given, write the samples there (:func:`models.sample_output.write_samples`).
    seed
        Seed of the sampling run; also part of every sample id ``mcflow-<seed>-<index>``.
    steps
        Integration steps (default: the config's ``sample.steps``).
    k
        Samples per composition (CSP) or per structure (ATG).
    mask_sites
        ATG substitution: per structure, the site indices (input order) to regenerate;
        the other sites keep their elements. None = all sites.
    guidance
        Noisy guidance for CSP/ATG; None = the config's setting (``auto``: on iff k = 1).
    batch_size
        Samples per forward pass (default: the config's).
    device
        ``auto``, ``cpu`` or ``cuda``.
    anneal_slope
        Coordinate anti-annealing slope (default: the config's ``sample.coord_anneal_slope``).

    Returns
    -------
    list[SampleRecord]
        One record per sample (failed ones with their reason), in request order.
    """
    model, cfg, priors = load_model(checkpoint, device)
    if anneal_slope is None:
        anneal_slope = cfg.sample.coord_anneal_slope
    steps = steps or cfg.sample.steps
    batch_size = batch_size or cfg.sample.batch_size
    use_guidance = task != "dng" and (
        guidance
        if guidance is not None
        else cfg.sample.guidance == "on" or (cfg.sample.guidance == "auto" and k == 1)
    )
    guide = Guidance(cfg.sample.omega, cfg.sample.sigma) if use_guidance else None
    meta = {"steps": steps, "guidance": use_guidance, "k": k, "anneal_slope": anneal_slope}
    if task == "dng":
        if not n:
            raise ValueError("DNG needs n > 0")
        sizes = priors.sample_n_atoms(n, np.random.default_rng(seed))
        jobs = [_Job(SampleSpec(int(size)), {}) for size in sizes]
    elif task == "csp":
        jobs = _csp_jobs(compositions, structures, k)
    elif task == "atg":
        jobs = _atg_jobs(structures, mask_sites, k)
    else:
        raise ValueError(f"unknown task {task!r}; expected dng, csp or atg")
    runnable = {i: job.spec for i, job in enumerate(jobs) if job.spec is not None}
    crystals = generate(
        model,
        list(runnable.values()),
        task,
        steps,
        seed,
        batch_size=batch_size,
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
    if out_dir is not None:
        write_samples(out_dir, records)
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
        """Samples of any task (see :func:`sample`); SymADiT's options are refused."""
        refuse_options(self.name, request, ("guidance_scale", "spacegroups"))
        return sample(
            request.checkpoint,
            request.task,
            n=request.n,
            compositions=request.compositions,
            structures=request.structures,
            out_dir=request.out_dir,
            seed=request.seed,
            steps=request.steps,
            k=request.k,
            mask_sites=request.mask_sites,
            guidance=request.guidance,
        )
