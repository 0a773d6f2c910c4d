"""Flow ``nightly-benchmark``: the S.U.N. run with fixed seeds, compared with the night before.

Each night writes ``runs/nightly-<date>/``; the comparison with the latest earlier night
flags every rate that dropped by more than its tolerance in ``regressions.md`` and in a
Prefect artifact.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.discovery import discovery_flow
from tasks.core.atomic import write_text_atomic
from tasks.pipeline.sun import RUN_RATES, RateRecord, read_run_rates


def compare_metrics(
    today: dict[str, dict[str, RateRecord]],
    previous: dict[str, dict[str, RateRecord]],
    tolerance: float = 1.0,
) -> list[str]:
    """Rates (percent) that fell by more than ``tolerance`` points since the previous night."""
    drops = []
    for key, rates in today.items():
        for name, now in rates.items():
            before = previous.get(key, {}).get(name)
            if before is not None and now.percent < before.percent - tolerance:
                drops.append(
                    f"{key} {name}: {before.paper} → {now.paper} "
                    f"({now.percent - before.percent:+.2f} points)"
                )
    return drops


def previous_night(run_root: Path, today: str) -> Path | None:
    """``metrics.json`` of the latest nightly run before ``today`` (``YYYYMMDD``)."""
    earlier = sorted(
        p for p in run_root.glob("nightly-*/metrics.json") if p.parent.name < f"nightly-{today}"
    )
    return earlier[-1] if earlier else None


@flow(name="nightly-benchmark")
def nightly_benchmark(
    profile: str = "quick", seed: int = 0, tolerance: float = 1.0
) -> dict[str, Any]:
    """Run the S.U.N. evaluation with fixed seeds and flag regressions against last night."""
    logger = get_run_logger()
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    result = discovery_flow(profile=profile, run_id=f"nightly-{today}", overrides={"seed": seed})
    run_dir = Path(result["report"]).parent.parent
    before = previous_night(run_dir.parent, today)
    if before is None:
        text = "No earlier night to compare with.\n"
        drops: list[str] = []
    else:
        today_rates = RUN_RATES.validate_python(result["metrics"])
        drops = compare_metrics(today_rates, read_run_rates(before), tolerance)
        text = f"Compared with {before.parent.name}: " + (
            "no regression.\n" if not drops else "\n" + "\n".join(f"- {d}" for d in drops) + "\n"
        )
    write_text_atomic(run_dir / "regressions.md", f"# Nightly regressions\n\n{text}")
    create_markdown_artifact(key="nightly-regressions", markdown=text)
    logger.info(text)
    return {**result, "regressions": drops}
