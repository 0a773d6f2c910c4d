"""What the loop learns from between rounds: the confirmed crystals and the fine-tuning set.

Pure functions over round directories (:class:`tasks.pipeline.summary.RoundFiles`):

- :func:`round_discoveries` lists the crystals one model's round confirmed, with their
  provenance (round, model, evidence, E_hull);
- :func:`finetune_dataset` puts them through the same ingestion as the training set
  (records, Wyckoff tokens, MCFlow order) and writes the training set plus them (each
  ``discovered_weight`` times) as the next fine-tuning set, with a JSON account of it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tasks.core.atomic import atomic_write, write_json_atomic
from tasks.core.columns import Col
from tasks.core.records import STATUS_OK
from tasks.ingest.config import IngestConfig
from tasks.ingest.run import ingest_entries_to_dir
from tasks.ingest.sources import RawEntry
from tasks.pipeline.config import LoopConfig
from tasks.pipeline.summary import RoundFiles

#: Columns of a discoveries table.
DISCOVERY_COLUMNS = ["id", "structure", "round", "model", "evidence", "e_hull"]
#: Source name of the confirmed crystals in a fine-tuning set.
DISCOVERED = "discovered"


def round_discoveries(
    files: RoundFiles, model: str, round_index: int, evidence: str, dft_label: str
) -> pd.DataFrame:
    """The crystals one model's round confirmed (meta)stable, with their provenance.

    Parameters
    ----------
    files
        The round directory of the model.
    model, round_index
        Provenance columns.
    evidence
        ``dft``: the DFT (or stand-in) (meta)stable picks, with their relaxed structures;
        ``mlip``: also every candidate the MLIP hull places (meta)stable.
    dft_label
        What the DFT step was (``DFT`` or ``stand-in``), written into ``evidence``.
    """
    found = []
    if files.dft_results.is_file() and files.dft_candidates.is_file():
        dft = pd.read_parquet(files.dft_results)
        ok = dft[(dft[Col.DFT_STATUS] == "completed") & dft[Col.METASTABLE].astype(bool)]
        picks = pd.read_parquet(files.dft_candidates).set_index(Col.ID)
        found += [
            (i, picks.loc[i, Col.STRUCTURE], dft_label, float(e))
            for i, e in zip(ok[Col.ID], ok[Col.E_HULL_DFT], strict=True)
        ]
    if evidence == "mlip" and files.hull.is_file():
        hull = pd.read_parquet(files.hull)
        meta = hull[hull[Col.METASTABLE].astype(bool) & hull[Col.E_HULL].notna()]
        relaxed = pd.read_parquet(files.relaxed).set_index(Col.ID)
        seen = {i for i, *_ in found}
        found += [
            (i, relaxed.loc[i, Col.STRUCTURE], "MLIP", float(e))
            for i, e in zip(meta[Col.ID], meta[Col.E_HULL], strict=True)
            if i not in seen
        ]
    rows = [
        {"id": i, "structure": s, "round": round_index, "model": model, "evidence": how,
         "e_hull": e}
        for i, s, how, e in found
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=DISCOVERY_COLUMNS)


def add_discoveries(path: Path, new: pd.DataFrame) -> Path:
    """Append ``new`` to the discoveries table at ``path`` (the first row of an id wins)."""
    table = pd.concat([pd.read_parquet(path), new]) if path.is_file() else new
    table = table.drop_duplicates(Col.ID, keep="first").reset_index(drop=True)
    return atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False), keep_identical=True)


def finetune_dataset(
    train: Path, discoveries: Path, out_dir: Path, ingest: IngestConfig, loop: LoopConfig
) -> Path:
    """The next fine-tuning set: the training records plus the confirmed crystals.

    The confirmed crystals are ingested like any dataset (``out_dir/discovered/``, with its
    rejects); each accepted one enters ``loop.discovered_weight`` times (copies get the ids
    ``<id>#copy<k>``) with ``source`` = ``discovered`` and its provenance columns.

    Returns
    -------
    Path
        ``out_dir/finetune.parquet``; ``out_dir/finetune.json`` lists the ids and counts.
    """
    table = pd.read_parquet(discoveries)
    entries = [
        RawEntry(id=str(i), source=DISCOVERED, material_id=str(i), payload=s, fmt="json")
        for i, s in zip(table[Col.ID], table[Col.STRUCTURE], strict=True)
    ]
    result = ingest_entries_to_dir(entries, DISCOVERED, out_dir / DISCOVERED, ingest)
    records = pd.read_parquet(result.dataset)
    accepted = records[records[Col.STATUS] == STATUS_OK]
    provenance = table.drop(columns=[Col.STRUCTURE]).rename(columns={"e_hull": "e_hull_found"})
    accepted = accepted.merge(provenance, on=Col.ID, how="left")
    copies = [
        accepted.assign(**{Col.ID: accepted[Col.ID] + f"#copy{k}"}) if k > 1 else accepted
        for k in range(1, loop.discovered_weight + 1)
    ]
    base = pd.read_parquet(train)
    base = base[base[Col.STATUS] == STATUS_OK]
    combined = pd.concat([base, *copies], ignore_index=True)
    path = atomic_write(
        out_dir / "finetune.parquet", lambda tmp: combined.to_parquet(tmp, index=False)
    )
    rejected = records[records[Col.STATUS] != STATUS_OK]
    write_json_atomic(
        out_dir / "finetune.json",
        {
            "training_set": str(train),
            "n_training": len(base),
            "discovered_weight": loop.discovered_weight,
            "discovered_ids": list(accepted[Col.ID]),
            "rejected": dict(zip(rejected[Col.ID], rejected[Col.REASON], strict=True)),
            "n_rows": len(combined),
        },
    )
    return path
