"""Canonical dataset files: where they live upstream and how to fetch them verified.

The MP-20 (CDVAE) and MPTS-52 (DiffCSP) CSV splits are downloaded once on a machine with
internet, checked against their sha256 and cached; a machine without internet points the
pipeline at a local copy instead.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tasks.core.atomic import atomic_write

log = logging.getLogger(__name__)

_CDVAE = "https://raw.githubusercontent.com/txie-93/cdvae/main/data"
_DIFFCSP = "https://raw.githubusercontent.com/jiaor17/DiffCSP/main/data"


@dataclass(frozen=True)
class CanonicalFile:
    """An upstream file with its expected content hash and size."""

    name: str
    url: str
    sha256: str
    size: int


CANONICAL_FILES: dict[str, CanonicalFile] = {
    f.name: f
    for f in (
        CanonicalFile(
            "mp_20/train",
            f"{_CDVAE}/mp_20/train.csv",
            "9c5a34b3684ff4b86d87a86c1c42298d1d28322ea0f03059d9e80ab6a2b729a7",
            80_920_549,
        ),
        CanonicalFile(
            "mp_20/val",
            f"{_CDVAE}/mp_20/val.csv",
            "68e101e777c168429d84feb5bf1c5432f1a1b625884f72499c54c4d68e7ee73a",
            26_864_684,
        ),
        CanonicalFile(
            "mp_20/test",
            f"{_CDVAE}/mp_20/test.csv",
            "6d63e5d7a607866d94014b3e8ae34f0b9f4d6a2b2332bbc50fd3ec976f487231",
            26_846_148,
        ),
        CanonicalFile(
            "mpts_52/train",
            f"{_DIFFCSP}/mpts_52/train.csv",
            "db33cfc86530bbd4b020405989c5cd12130f447ad7b9258d29b3ff9c8a26d764",
            45_705_353,
        ),
        CanonicalFile(
            "mpts_52/val",
            f"{_DIFFCSP}/mpts_52/val.csv",
            "b5d9f7a8ff72f3a1f24d6bb97e11ad201be40d10be7b27924234da06af04baba",
            9_941_357,
        ),
        CanonicalFile(
            "mpts_52/test",
            f"{_DIFFCSP}/mpts_52/test.csv",
            "4d6e76c4726fb12fb2a7e5bb23594f9b82dbd9bf67b7bfd4866e9c74a8f49038",
            16_358_482,
        ),
    )
}


class ChecksumError(RuntimeError):
    """A downloaded or local file does not have the expected sha256."""


def sha256_of(path: str | Path, block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_verified(url: str, sha256: str, dest: str | Path, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there.

    The file is written atomically and only kept when its sha256 matches.

    Raises
    ------
    ChecksumError
        If the downloaded bytes have another hash (nothing is left at ``dest``).
    """
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest

    def _download(tmp: Path) -> None:
        log.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out)
        actual = sha256_of(tmp)
        if actual != sha256:
            raise ChecksumError(f"{url}: sha256 {actual} does not match expected {sha256}")

    return atomic_write(dest, _download)


def canonical_path(name: str, cache_dir: str | Path, local_path: str | Path | None = None) -> Path:
    """Path of a verified canonical split, downloading it into ``cache_dir`` if needed.

    Parameters
    ----------
    name
        ``mp_20/train``, ``mp_20/val``, ``mp_20/test``, ``mpts_52/...``.
    cache_dir
        Where downloads are kept (``<cache_dir>/<name>.csv``).
    local_path
        A copy the user already has (offline machines); verified, never downloaded.
    """
    if name not in CANONICAL_FILES:
        raise KeyError(f"unknown canonical dataset {name!r}; known: {sorted(CANONICAL_FILES)}")
    spec = CANONICAL_FILES[name]
    if local_path is not None:
        local_path = Path(local_path)
        actual = sha256_of(local_path)
        if actual != spec.sha256:
            raise ChecksumError(f"{local_path}: sha256 {actual} is not the canonical {name}")
        return local_path
    return fetch_verified(spec.url, spec.sha256, Path(cache_dir) / f"{name}.csv")
