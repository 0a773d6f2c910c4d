"""The S.U.N. estimate: the product of the funnel's fractions, with a credible interval.

Following the SymADiT/ADiT protocol (``docs/evaluation.md``), S.U.N. = validity × uniqueness ×
novelty × stability, each fraction measured on its own stage of the funnel (valid among
generated, unique among valid, novel among the drawn valid-and-unique, stable among the
checked V.U.N.). Counts are kept beside every fraction so a figure such as ``5.53 (12)``
reads "5.53 %, 12 of the checked crystals were stable".

The interval propagates the binomial uncertainty of every stage: each fraction gets a
Jeffreys posterior Beta(k + ½, n − k + ½); the product's 2.5/97.5 % quantiles over seeded
Monte-Carlo draws give the 95 % interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass


@dataclass(frozen=True)
class FunnelStage:
    """One step of the funnel: ``passed`` of ``checked`` crystals survived it."""

    name: str
    passed: int
    checked: int

    def __post_init__(self) -> None:
        if not 0 <= self.passed <= self.checked:
            raise ValueError(f"stage {self.name!r}: passed={self.passed} not in 0..{self.checked}")

    @property
    def fraction(self) -> float:
        """``passed / checked`` (NaN when nothing was checked)."""
        return self.passed / self.checked if self.checked else float("nan")


@dataclass(frozen=True)
class RateEstimate:
    """A funnel product with its interval, in percent, and the count behind it."""

    name: str
    percent: float
    low: float
    high: float
    count: int
    checked: int

    def paper_notation(self) -> str:
        """``5.53 (12)``: the percentage and the count of the last stage."""
        return f"{self.percent:.2f} ({self.count})"


def funnel_rate(
    name: str,
    stages: list[FunnelStage],
    n_draws: int = 20_000,
    seed: int = 0,
    known_fraction: float = 1.0,
) -> RateEstimate:
    """Product of the stages' fractions with a 95 % interval (Jeffreys priors, Monte Carlo).

    Parameters
    ----------
    name
        Label of the rate (``S.U.N.``, ``M.S.U.N.``...).
    stages
        The funnel in order; the last stage's ``passed`` is the reported count.
    n_draws, seed
        Monte-Carlo draws for the interval, and their seed.
    known_fraction
        A fraction known without counts (e.g. a V.U.N. rate given on the command line),
        multiplied in as exact.
    """
    if not stages:
        raise ValueError("a funnel needs at least one stage")
    if not 0 <= known_fraction <= 1:
        raise ValueError(f"known_fraction={known_fraction} is not a fraction")
    rng = np.random.default_rng(seed)
    point = known_fraction
    product = np.full(n_draws, known_fraction)
    for stage in stages:
        point *= stage.fraction
        if stage.checked:
            product *= rng.beta(stage.passed + 0.5, stage.checked - stage.passed + 0.5, n_draws)
        else:
            product *= np.nan
    low, high = np.nanpercentile(product, [2.5, 97.5]) if np.isfinite(point) else (np.nan, np.nan)
    if point == 0:
        low = 0.0  # as Brown, Cai & DasGupta: the interval starts at 0 when nothing passed
    last = stages[-1]
    return RateEstimate(
        name=name,
        percent=100 * point,
        low=100 * float(low),
        high=100 * float(high),
        count=last.passed,
        checked=last.checked,
    )


def stability_estimates(
    funnel: list[FunnelStage],
    stable: FunnelStage,
    metastable: FunnelStage,
    label: str,
    unbiased: bool,
    seed: int = 0,
) -> list[RateEstimate]:
    """The stability rates of a checked sample: S.U.N. products, or hit rates.

    Parameters
    ----------
    funnel
        The stages before the stability check (valid, unique, novel...).
    stable, metastable
        Stable / metastable among the checked candidates.
    label
        What checked them (``MLIP``, ``DFT``, ``stand-in``), part of every name.
    unbiased
        Whether the checked candidates are an unbiased draw of the funnel's survivors
        (the papers' protocol): then S.U.N. = product of all fractions. A ranked pick (the
        lowest MLIP E_hull first) only gives hit rates among the picks.
    """
    if unbiased:
        return [
            funnel_rate(f"S.U.N. ({label})", [*funnel, stable], seed=seed),
            funnel_rate(f"M.S.U.N. ({label})", [*funnel, metastable], seed=seed),
        ]
    return [
        funnel_rate(f"stable among ranked picks ({label})", [stable], seed=seed),
        funnel_rate(f"metastable among ranked picks ({label})", [metastable], seed=seed),
    ]


def funnel_table(stages: list[FunnelStage]) -> str:
    """Markdown table of a funnel: counts beside percentages."""
    lines = ["| stage | passed | checked | fraction |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {s.name} | {s.passed:,} | {s.checked:,} | {100 * s.fraction:.2f}% |" for s in stages
    ]
    return "\n".join(lines) + "\n"


def estimate_as_dict(estimate: RateEstimate) -> dict[str, Any]:
    """JSON-ready form, with the paper notation (a :class:`RateRecord`)."""
    return {**asdict(estimate), "paper": estimate.paper_notation()}


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RateRecord(RateEstimate):
    """A rate as a run's ``metrics.json`` holds it (:func:`estimate_as_dict`): the estimate
    and its paper notation."""

    paper: str = ""


#: A run's ``metrics.json``: ``{"<model>/round<k>": {rate name: RateRecord}}``.
RUN_RATES = TypeAdapter(dict[str, dict[str, RateRecord]])


def read_run_rates(path: str | Path) -> dict[str, dict[str, RateRecord]]:
    """The rates of a run's ``metrics.json``, typed.

    Raises
    ------
    ValueError
        The file is not a run's rates (the message names the file).
    """
    try:
        return RUN_RATES.validate_json(Path(path).read_text())
    except ValidationError as err:
        raise ValueError(f"{path} is not a run's metrics.json: {err}") from None


def dft_sun_summary(counts: dict[str, Any], vun_rate: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """S.U.N. and M.S.U.N. of a DFT batch given as counts, beside the counts.

    Parameters
    ----------
    counts
        :func:`tasks.dft.collect.dft_counts` of the batch: the checked candidates (completed
        with an E_hull) are the denominator; failed ones are reported, never counted as
        "checked, not stable".
    vun_rate
        Fraction of generated crystals that are valid, unique and novel (the funnel before
        DFT), taken as exact: S.U.N. = ``vun_rate`` × stable fraction.
    seed
        Seed of the interval's Monte-Carlo draws.
    """
    n = counts["n_checked"]
    stable = FunnelStage("DFT stable", counts["n_stable"], n)
    meta = FunnelStage("DFT metastable", counts["n_metastable"], n)
    sun = funnel_rate("S.U.N.", [stable], seed=seed, known_fraction=vun_rate)
    msun = funnel_rate("M.S.U.N.", [meta], seed=seed, known_fraction=vun_rate)
    return {
        **counts,
        "vun_rate": vun_rate,
        "sun": estimate_as_dict(sun),
        "msun": estimate_as_dict(msun),
    }
