"""The run directory: one folder per run id holding every stage's inputs and outputs.

``runs/<run id>/``: ``config.yaml`` (resolved), ``dataset/``, ``checkpoints/<model>/``,
``round-<k>/<model>/{samples,filters,mlip,dft}/``, ``discovered/``, ``metrics.json``,
``report/index.html``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from tasks.atomic import atomic_write, write_text_atomic
from tasks.config import ConfigError, config_hash
from tasks.pipeline_config import PipelineConfig
from tasks.records import structure_from_json

#: Columns of a next round's reference set (what novelty and the MLIP hull read).
REFERENCE_COLUMNS = ["id", "formula", "structure", "status", "content_hash"]


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
            When an existing run id was made with a different configuration: resuming it
            would mix results of two configurations.
        """
        digest = config_hash(config)
        if run_id is None:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
            run_id = f"{config.profile}-{stamp}-{digest[:6]}"
        path = Path(run_root) / run_id
        recorded = path / "config.yaml"
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True)
        if recorded.exists() and recorded.read_text() != text:
            raise ConfigError(
                f"run {run_id} exists with another configuration ({recorded}); "
                "choose a new run id or the same settings"
            )
        path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(recorded, text)
        return cls(run_id=run_id, path=path)

    def round_dir(self, round_index: int) -> Path:
        """Folder of one round of the loop."""
        return self.path / f"round-{round_index}"

    @property
    def report_dir(self) -> Path:
        """Folder of the HTML report."""
        return self.path / "report"

    def add_discovered(
        self, reference: str | Path, confirmed: pd.DataFrame, round_index: int
    ) -> Path:
        """Add confirmed crystals to the ``discovered`` dataset and the next reference set.

        Parameters
        ----------
        reference
            The current reference set (a records parquet with ``id`` and ``structure``).
        confirmed
            Rows with ``id`` and ``structure`` of the crystals confirmed this round.
        round_index
            The round that confirmed them.

        Returns
        -------
        Path
            ``reference-round<k+1>.parquet``: the reference plus every discovered crystal.
        """
        formulas = [
            structure_from_json(s).composition.reduced_formula for s in confirmed["structure"]
        ]
        found = confirmed[["id", "structure"]].assign(
            formula=formulas, status="ok", source=f"round-{round_index}", content_hash=""
        )
        discovered_path = self.path / "discovered" / "discovered.parquet"
        if discovered_path.exists():
            found = pd.concat([pd.read_parquet(discovered_path), found], ignore_index=True)
        found = found.drop_duplicates("id", keep="first")
        atomic_write(discovered_path, lambda tmp: found.to_parquet(tmp, index=False))
        base = pd.read_parquet(reference)
        base = base[base["status"] == "ok"].assign(status="ok")
        if "content_hash" not in base:
            base = base.assign(content_hash="")
        merged = pd.concat([base[REFERENCE_COLUMNS], found[REFERENCE_COLUMNS]], ignore_index=True)
        merged = merged.drop_duplicates("id", keep="first")
        out = self.path / f"reference-round{round_index + 1}.parquet"
        return atomic_write(out, lambda tmp: merged.to_parquet(tmp, index=False))
