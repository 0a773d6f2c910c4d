"""Describe the machine a benchmark ran on, and save results next to that description."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tasks.core.atomic import write_json_atomic, write_text_atomic

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    """CPU model, usable cores, memory, load average, Python and date (UTC)."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_gib, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M"),
    }


def save_results(name: str, result: dict[str, Any], markdown: str) -> Path:
    """Write ``results/<name>.json`` (with machine and command) and ``results/<name>.md``."""
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), **result}
    result.setdefault("machine", machine_info())
    write_text_atomic(RESULTS_DIR / f"{name}.md", markdown)
    return write_json_atomic(RESULTS_DIR / f"{name}.json", result)


def write_profile(config: BaseModel, path: Path) -> Path:
    """A model config changed for a benchmark, as a YAML profile a ``TrainRequest`` names."""
    return write_text_atomic(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
