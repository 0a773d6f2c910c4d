"""The MLIP hull stage: relaxed candidates → E_hull on the MLIP's hull (and the committee's).

Reads the relaxation's document for its settings, places the candidates on the first MLIP's
hull (:class:`tasks.mlip.hull.MLIPHull`), lets a committee's further MLIPs judge them on
their own hulls (:func:`tasks.mlip.committee.run_committee`) and writes ``hull.parquet`` and
the :class:`tasks.mlip.documents.HullSummary`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from tasks.core.atomic import atomic_write
from tasks.core.columns import Col
from tasks.core.mapping import Mapper
from tasks.core.records import STATUS_OK
from tasks.mlip.backends import load_mlip
from tasks.mlip.committee import run_committee
from tasks.mlip.documents import HULL_SUMMARY, HullSummary
from tasks.mlip.hull import MLIPHull, hull_references, read_relaxed, recorded_screen
from tasks.mlip.settings import ScreenSettings


def run_hull(
    relaxed: str | Path,
    out_dir: str | Path,
    screen: ScreenSettings | None = None,
    mapper: Mapper | None = None,
    extra_references: Sequence[str | Path] = (),
) -> Path:
    """Place relaxed candidates on the MLIP hull of the competing phases; write the results.

    Without ``screen`` the MLIP and relaxation settings are those the relaxation recorded
    (:class:`tasks.mlip.documents.RelaxMeta`, :func:`recorded_screen`) next to the relaxed
    candidates, so computed references are treated exactly like the candidates.

    Parameters
    ----------
    relaxed
        A :func:`tasks.mlip.runner.run_relax` output directory or its ``relaxed.parquet``.
    out_dir
        Writes ``hull.parquet`` (see :meth:`MLIPHull.evaluate`; with a committee, its verdicts
        and each member's columns, :func:`tasks.mlip.committee.run_committee`) and
        ``hull_summary.json`` (:class:`tasks.mlip.documents.HullSummary`).
    screen
        MLIP, relaxation and hull settings (which reference phases, where their energies
        come from) and the stable / metastable rule.
    mapper
        Where the reference computations' chunks run (default: ``relax.scheduler``).
    extra_references
        More reference sets (the crystals earlier rounds confirmed).

    Returns
    -------
    Path
        The ``hull.parquet`` path.
    """
    candidates, meta = read_relaxed(relaxed)
    screen = screen or recorded_screen(meta)
    config, rule = screen.hull, screen.stability
    start = time.perf_counter()
    backend = load_mlip(screen.mlip)
    references = hull_references(config, backend.version, extra_references)
    hull = MLIPHull(references, screen, mapper)
    frame = hull.evaluate(candidates)
    out = Path(out_dir)
    committee = None
    if screen.committee.members:
        first_wall_s = time.perf_counter() - start
        frame, committee = run_committee(
            candidates, frame, screen, out, mapper, extra_references, first_wall_s
        )
    path = atomic_write(out / "hull.parquet", lambda tmp: frame.to_parquet(tmp, index=False))
    ok = frame[Col.HULL_STATUS] == STATUS_OK
    summary = HullSummary(
        mlip_version=hull.backend.version,
        reference=references.description,
        reference_sources=config.reference or "papers' hull (reference table)",
        extra_references=[str(p) for p in extra_references],
        n_reference_phases=len(hull.references),
        reference_single_point=hull.relax.single_point,
        candidate_single_point=bool(frame[Col.CANDIDATE_SINGLE_POINT].any()),
        n_candidates=len(frame),
        n_on_hull=int(ok.sum()),
        n_stable=int(frame[Col.STABLE].sum()),
        n_metastable=int(frame[Col.METASTABLE].sum()),
        n_flagged=int(frame[Col.FLAGGED].sum()),
        n_uncovered=int((frame[Col.COVERAGE_GAPS] != "").sum()),
        n_stable_flagged=int((frame[Col.STABLE] & frame[Col.FLAGGED]).sum()),
        references=hull.stats,
        cache_dir=str(hull.cache_dir),
        relax=hull.relax,
        config=config,
        stability=rule,
        wall_s=time.perf_counter() - start,
        warning=(
            "reference energies are single points (not relaxed): relaxed candidates' E_hull is "
            "biased toward stability"
            if hull.relax.single_point
            else ""
        ),
        committee=committee,
    )
    summary.write(out / HULL_SUMMARY)
    return path
