"""Where the project finds its data: the repository, the bundled sample and ``../shared``."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable that overrides the location of the shared data directory.
SHARED_DATA_ENV = "DISCOVERY_SHARED_DATA"

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES_DIR = REPO_ROOT / "data" / "samples"
CONFIGS_DIR = REPO_ROOT / "configs"


def shared_data_dir() -> Path:
    """Return the directory holding the real datasets (MP-20, MPTS-52 splits, fixtures).

    ``$DISCOVERY_SHARED_DATA`` wins; otherwise ``../shared/data`` next to the repository.
    The directory may not exist (a fresh machine has no ``../shared``); callers that need it
    check ``.exists()`` or use the bundled sample in :data:`SAMPLES_DIR`.
    """
    override = os.environ.get(SHARED_DATA_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


#: Prefix of config paths that live in the shared data directory (``shared:mp_20/test.csv.gz``).
SHARED_PREFIX = "shared:"


def resolve_data_path(path: str | Path) -> Path:
    """Resolve a dataset path from a config.

    ``shared:<rel>`` is taken inside :func:`shared_data_dir`; a relative path that does not
    exist from the working directory is taken relative to the repository root (configs name
    bundled files such as ``data/samples/...``).
    """
    text = str(path)
    if text.startswith(SHARED_PREFIX):
        return shared_data_dir() / text[len(SHARED_PREFIX) :]
    candidate = Path(text).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return REPO_ROOT / candidate
