"""Which checkpoint a round sampled and what it was trained on (``checkpoint.json``).

Written by the flow when a round has its checkpoint, read by the round's summary and the
report's round-by-round table.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tasks.core.documents import StageDocument


class CheckpointInfo(StageDocument):
    """Which checkpoint a round sampled: its id (sha256, 12 hex), path and what it was trained
    on (:class:`models.contract.TrainedOn`; ``None`` for a checkpoint recorded without it)."""

    checkpoint: str
    checkpoint_id: str
    n_train: int | None = None
    init_from: str | None = None


def checkpoint_info(checkpoint: str | Path) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a checkpoint file, from its bytes and its own record."""
    from models.contract import TrainedOn
    from models.training.checkpoint import load_checkpoint

    path = Path(checkpoint)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    trained = TrainedOn.from_extra(load_checkpoint(path, map_location="cpu").get("extra") or {})
    return CheckpointInfo(
        checkpoint=str(path),
        checkpoint_id=digest,
        n_train=trained.n_train if trained else None,
        init_from=trained.init_from if trained else None,
    )


def write_checkpoint_info(checkpoint: str | Path, path: Path) -> Path:
    """Write :func:`checkpoint_info` of ``checkpoint`` at ``path`` (left untouched when it
    already says the same, so a resumed run rewrites nothing it finished)."""
    return checkpoint_info(checkpoint).write(path, keep_identical=True)
