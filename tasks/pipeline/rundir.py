"""The run directory: one folder per run id holding every stage's inputs and outputs.

``runs/<run id>/``: ``run.json`` (layout version and the configuration's content hash),
``config.yaml`` (resolved), ``dataset/``, ``checkpoints/<model>/``,
``round-<k>/<model>/{samples,filters,mlip,dft}/``, ``discovered/``, ``metrics.json``,
``report/``.

A run id is a plain name (``[A-Za-z0-9._-]+``): it can never point outside the run root.
Reopening a run resumes it when its configuration computes the same things (placement
settings such as worker counts or the Dask cluster may differ); anything else is refused.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from tasks.core.atomic import atomic_write, write_text_atomic
from tasks.core.config import ConfigError, config_hash
from tasks.core.documents import DocumentError, StageDocument
from tasks.core.records import structure_from_json
from tasks.pipeline.config import PipelineConfig

#: Version of the run directory's layout; runs of another layout are refused, not mixed.
LAYOUT_VERSION = 3
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")

#: Columns of a set of discovered crystals (what novelty and the MLIP hull read).
REFERENCE_COLUMNS = ["id", "formula", "structure", "status", "content_hash"]


def check_run_id(run_id: str) -> str:
    """``run_id`` when it is a plain name; :class:`ConfigError` otherwise (``../x``, ``/x``)."""
    if not RUN_ID_PATTERN.match(run_id) or run_id in (".", ".."):
        raise ConfigError(f"run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


class RunMeta(StageDocument):
    """``run.json``: the layout version of the run directory and the config's content hash."""

    layout: int
    config_hash: str


@dataclass(frozen=True)
class RunDir:
    """Paths of one run."""

    run_id: str
    path: Path

    @classmethod
    def open(cls, run_root: Path, run_id: str | None, config: PipelineConfig) -> RunDir:
        """Create a run directory (or reopen one to resume) and record the resolved config.

        Raises
        ------
        ConfigError
            The run id is not a plain name, or an existing run was made by another layout
            of the pipeline or with a configuration that computes something else: resuming
            it would mix results.
        """
        digest = config_hash(config)
        if run_id is None:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            run_id = f"{config.profile}-{stamp}-{digest[:6]}"
        check_run_id(run_id)
        path = Path(run_root) / run_id
        meta_path = path / "run.json"
        if meta_path.exists():
            try:
                meta = RunMeta.read(meta_path)
            except DocumentError as err:
                raise ConfigError(f"run {run_id}: {err}; start a new run id") from None
            if meta.layout != LAYOUT_VERSION:
                raise ConfigError(
                    f"run {run_id} was made by layout {meta.layout} of the pipeline, "
                    f"this is layout {LAYOUT_VERSION}; start a new run id"
                )
            if meta.config_hash != digest:
                raise ConfigError(
                    f"run {run_id} exists with another configuration ({path / 'config.yaml'}); "
                    "choose a new run id or the same settings"
                )
        elif (path / "config.yaml").exists():
            raise ConfigError(
                f"run {run_id} was made by an earlier version of the pipeline (no run.json); "
                "its files are not resumed: start a new run id"
            )
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(
            path / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)
        )
        RunMeta(layout=LAYOUT_VERSION, config_hash=digest).write(meta_path)
        return cls(run_id=run_id, path=path)

    def round_dir(self, round_index: int) -> Path:
        """Folder of one round of the loop."""
        return self.path / f"round-{round_index}"

    def discovered_path(self, round_index: int) -> Path:
        """The crystals round ``round_index`` confirmed (they join later rounds' references)."""
        return self.path / "discovered" / f"round-{round_index}.parquet"

    @property
    def report_dir(self) -> Path:
        """Folder of the HTML report."""
        return self.path / "report"

    def add_discovered(self, confirmed: pd.DataFrame, round_index: int) -> Path:
        """Write the crystals a round confirmed as a reference set of their own.

        Round k+1's novelty reference is the training set plus every earlier round's file,
        and its hull's competing phases include the same files. One file per round, written
        once, so a resumed round reads what it read the first time, and each file's matching
        index is built once.

        Parameters
        ----------
        confirmed
            Rows with ``id`` and ``structure`` of the crystals confirmed this round.
        round_index
            The round that confirmed them.

        Returns
        -------
        Path
            ``discovered/round-<k>.parquet`` (:data:`REFERENCE_COLUMNS` and ``source``).
        """
        formulas = [
            structure_from_json(s).composition.reduced_formula for s in confirmed["structure"]
        ]
        found = confirmed[["id", "structure"]].assign(
            formula=formulas, status="ok", content_hash="", source=f"round-{round_index}"
        )
        found = found.drop_duplicates("id", keep="first")[[*REFERENCE_COLUMNS, "source"]]
        path = self.discovered_path(round_index)
        return atomic_write(path, lambda tmp: found.to_parquet(tmp, index=False), True)
