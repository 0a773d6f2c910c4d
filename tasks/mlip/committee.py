"""A committee of MLIPs: every member judges the candidates on its own hull; the committee
calls a crystal stable (metastable) only when enough of them do.

The first MLIP (``screen.mlip``) relaxes the candidates and places them on its hull as
before. Every further member (``screen.committee.members``) takes the first one's relaxed
geometry, computes its own energy there (a single point, or a few FIRE steps with its own
forces) and places the crystal on a hull of its own reference energies: energies of two
MLIPs never share a hull. :func:`committee_verdicts` is the one voting rule, used by the hull
stage and by ``discovery hull-ensemble``. A crystal the members disagree on is flagged with
every member's E_hull; with ``min_agree`` left at all members it is never counted stable.

Published accuracy of the members' models (Matbench Discovery, unique-prototype WBM test
set; Riebesell et al., Nat. Mach. Intell. 2025, https://matbench-discovery.materialsproject.org)
is kept in :data:`MATBENCH_DISCOVERY` and printed beside every committee in the report.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core.atomic import atomic_write
from tasks.core.columns import Col
from tasks.core.mapping import Mapper
from tasks.core.records import STATUS_OK
from tasks.mlip.backends import load_mlip
from tasks.mlip.documents import CommitteeSummary, MemberSummary
from tasks.mlip.hull import MLIPHull, hull_references
from tasks.mlip.runner import relax_items
from tasks.mlip.settings import CommitteeMember, MLIPConfig, ScreenSettings

#: Published Matbench Discovery classification figures of the models the backends ship:
#: F1, precision, recall on the unique-prototype WBM test set (the models' YAML records in
#: github.com/janosh/matbench-discovery, ``models/<family>/<model>.yml``).
MATBENCH_DISCOVERY: dict[str, tuple[float, float, float]] = {
    "chgnet:0.3.0": (0.613, 0.514, 0.758),
    "sevennet:7net-0": (0.724, 0.650, 0.818),
    "sevennet:7net-l3i5": (0.760, 0.708, 0.821),
}
DEFAULT_MODELS = {"chgnet": "0.3.0", "sevennet": "7net-0"}


def member_label(mlip: MLIPConfig) -> str:
    """A member's name in columns and reports: the backend, with its model if not the default."""
    if mlip.model is None or mlip.model == DEFAULT_MODELS.get(mlip.name):
        return mlip.name
    return f"{mlip.name}-{Path(mlip.model).stem}"


def published_figures(mlip: MLIPConfig) -> str:
    """The model's published Matbench Discovery F1, precision and recall, or that none is
    recorded."""
    key = f"{mlip.name}:{mlip.model or DEFAULT_MODELS.get(mlip.name, '')}"
    if key not in MATBENCH_DISCOVERY:
        return "no published Matbench Discovery figure recorded"
    f1, precision, recall = MATBENCH_DISCOVERY[key]
    return f"Matbench Discovery F1 {f1:.3f}, precision {precision:.3f}, recall {recall:.3f}"


def committee_verdicts(results: dict[str, pd.DataFrame], min_agree: int) -> pd.DataFrame:
    """Combine per-MLIP hull results (each against its own hull) into the committee's verdict.

    Parameters
    ----------
    results
        MLIP label -> :meth:`tasks.mlip.hull.MLIPHull.evaluate` output for the same candidates.
    min_agree
        How many MLIPs must call a candidate stable (metastable) for the committee.

    Returns
    -------
    pandas.DataFrame
        Per ``id``: ``e_hull_<label>``, ``stable_<label>`` and ``metastable_<label>`` per MLIP,
        ``e_hull_mean`` and ``e_hull_std`` (over the MLIPs that placed it), ``n_mlips``,
        ``stable_votes``, ``metastable_votes``, ``stable`` and ``metastable`` (votes >=
        ``min_agree``), ``stable_split`` / ``metastable_split`` (the members disagree), and
        ``disagreement`` (the split in words, with every E_hull).
    """
    if min_agree < 1 or min_agree > len(results):
        raise ValueError(f"min_agree={min_agree} must be between 1 and {len(results)} MLIPs")
    columns: dict[str, pd.Series] = {}
    for label, frame in results.items():
        indexed = frame.drop_duplicates(Col.ID).set_index(Col.ID)
        placed = indexed[Col.HULL_STATUS] == STATUS_OK
        columns[f"e_hull_{label}"] = indexed[Col.E_HULL].where(placed)
        columns[f"stable_{label}"] = indexed[Col.STABLE].astype(bool) & placed
        columns[f"metastable_{label}"] = indexed[Col.METASTABLE].astype(bool) & placed
    out = pd.DataFrame(columns)
    labels = list(results)
    for label in labels:
        for kind in ("stable", "metastable"):
            out[f"{kind}_{label}"] = out[f"{kind}_{label}"].astype("boolean").fillna(False)
    values = out[[f"e_hull_{label}" for label in labels]].to_numpy(dtype=float)
    with warnings.catch_warnings():  # a crystal no member placed has no mean: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        out["e_hull_mean"] = np.nanmean(values, axis=1)
        out["e_hull_std"] = np.nanstd(values, axis=1)
    out["n_mlips"] = np.isfinite(values).sum(axis=1)
    for kind in ("stable", "metastable"):
        votes = out[[f"{kind}_{label}" for label in labels]].sum(axis=1).astype(int)
        out[f"{kind}_votes"] = votes
        out[kind] = votes >= min_agree
    for kind in ("stable", "metastable"):  # some members say yes, others no
        out[f"{kind}_split"] = out[f"{kind}_votes"] % len(labels) != 0
    split = out["stable_split"] | out["metastable_split"]
    out["disagreement"] = [
        "committee disagrees: "
        + ", ".join(
            f"{label} E_hull {row[f'e_hull_{label}']:+.4f}"
            if np.isfinite(row[f"e_hull_{label}"])
            else f"{label} not placed"
            for label in labels
        )
        + " eV/atom"
        if is_split
        else ""
        for (_, row), is_split in zip(out.iterrows(), split, strict=True)
    ]
    return out.reset_index(names=Col.ID)


def _member_candidates(
    relaxed: pd.DataFrame,
    member: CommitteeMember,
    screen: ScreenSettings,
    out_dir: Path,
    mapper: Mapper | None,
) -> pd.DataFrame:
    """The member's energies at the first MLIP's relaxed geometries (or a few steps on)."""
    ok = relaxed[relaxed[Col.STATUS] == STATUS_OK]
    items = list(zip(ok[Col.ID], ok[Col.STRUCTURE], strict=True))
    relax = screen.relax.model_copy(update={"steps": member.relax_steps})
    return relax_items(items, member.mlip, relax, chunk_dir=out_dir / "chunks", mapper=mapper)


def run_committee(
    relaxed: pd.DataFrame,
    first: pd.DataFrame,
    screen: ScreenSettings,
    out_dir: Path,
    mapper: Mapper | None = None,
    extra_references: Sequence[str | Path] = (),
    first_wall_s: float = 0.0,
) -> tuple[pd.DataFrame, CommitteeSummary]:
    """Judge the first MLIP's relaxed candidates with every further member, then vote.

    Parameters
    ----------
    relaxed
        The first MLIP's relaxations (``relaxed.parquet``).
    first
        The first MLIP's hull rows of those candidates.
    screen
        The screen settings (``committee`` names the further members).
    out_dir
        Receives ``members/<label>/hull.parquet`` (and the member's calculation chunks).
    mapper, extra_references
        Where the members' chunks run; reference sets beyond each member's hull config.
    first_wall_s
        How long the first MLIP's hull took (for its summary).

    Returns
    -------
    tuple
        The first MLIP's rows with the committee's ``stable`` / ``metastable``, each member's
        ``e_hull_<label>``, ``stable_<label>``, ``metastable_<label>``, the ranking
        :attr:`Col.E_HULL_COMMITTEE`, and every member's own flags (under its name) and the
        disagreements appended to ``flags``; and the :class:`CommitteeSummary`.
    """
    first_label = member_label(screen.mlip)
    frames = {first_label: first}
    members = [
        _summary(
            first_label, screen.mlip, load_mlip(screen.mlip).version, first, "", 0, first_wall_s
        )
    ]
    for member in screen.committee.members:
        start = time.perf_counter()
        label = member_label(member.mlip)
        if label in frames:
            raise ValueError(f"two committee members are both {label!r}")
        where = out_dir / "members" / label
        candidates = _member_candidates(relaxed, member, screen, where, mapper)
        backend = load_mlip(member.mlip)
        references = hull_references(member.hull, backend.version, extra_references)
        member_screen = ScreenSettings(
            mlip=member.mlip,
            relax=screen.relax,
            hull=member.hull,
            stability=screen.stability,
        )
        frame = MLIPHull(references, member_screen, mapper).evaluate(candidates)
        _write_parquet(frame, where / "hull.parquet")
        frames[label] = frame
        wall = time.perf_counter() - start
        members.append(
            _summary(
                label,
                member.mlip,
                backend.version,
                frame,
                references.description,
                member.relax_steps,
                wall,
            )
        )
    required = screen.committee.required()
    verdicts = committee_verdicts(frames, required).set_index(Col.ID)
    out = first.copy()
    ids = out[Col.ID]
    for label in frames:
        for column in (f"e_hull_{label}", f"stable_{label}", f"metastable_{label}"):
            out[column] = ids.map(verdicts[column])
    member_e_hull = out[[f"e_hull_{label}" for label in frames]].to_numpy(dtype=float)
    out[Col.E_HULL_COMMITTEE] = member_e_hull.max(axis=1)  # NaN when a member did not place it
    for kind in (Col.STABLE, Col.METASTABLE):
        out[kind] = ids.map(verdicts[kind]).astype("boolean").fillna(False).astype(bool)
    parts = [out[Col.FLAGS].fillna("").astype(str)]
    for label, frame in list(frames.items())[1:]:  # a member's own flags, under its name
        own = ids.map(frame.drop_duplicates(Col.ID).set_index(Col.ID)[Col.FLAGS]).fillna("")
        parts.append(own.map(lambda text, who=label: f"{who}: {text}" if text else ""))
    parts.append(ids.map(verdicts["disagreement"]).fillna(""))
    out[Col.FLAGS] = ["; ".join(part for part in row if part) for row in zip(*parts, strict=True)]
    out[Col.FLAGGED] = out[Col.FLAGS] != ""
    summary = CommitteeSummary(
        members=members,
        min_agree=required,
        n_disagree_stable=int(ids.map(verdicts["stable_split"]).fillna(False).sum()),
        n_disagree_metastable=int(ids.map(verdicts["metastable_split"]).fillna(False).sum()),
    )
    return out, summary


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _summary(
    label: str,
    mlip: MLIPConfig,
    mlip_version: str,
    frame: pd.DataFrame,
    reference: str,
    relax_steps: int,
    wall_s: float,
) -> MemberSummary:
    placed = frame[Col.HULL_STATUS] == STATUS_OK
    return MemberSummary(
        label=label,
        mlip_version=mlip_version,
        reference=reference,
        relax_steps=relax_steps,
        n_on_hull=int(placed.sum()),
        n_stable=int((frame[Col.STABLE].astype(bool) & placed).sum()),
        n_metastable=int((frame[Col.METASTABLE].astype(bool) & placed).sum()),
        published=published_figures(mlip),
        wall_s=wall_s,
    )
