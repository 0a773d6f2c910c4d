import hashlib
from pathlib import Path

import pytest

from tasks.ingest.download import ChecksumError, canonical_path, fetch_verified, sha256_of


def test_fetch_verified_from_local_url(tmp_path: Path) -> None:
    src = tmp_path / "src.csv"
    src.write_text("material_id,cif\n")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = fetch_verified(src.as_uri(), digest, tmp_path / "cache" / "file.csv")
    assert dest.read_text() == src.read_text()
    # a verified copy is reused (the source may vanish)
    src.unlink()
    assert fetch_verified(src.as_uri(), digest, dest) == dest


def test_checksum_mismatch_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.csv"
    src.write_text("tampered\n")
    dest = tmp_path / "cache" / "file.csv"
    with pytest.raises(ChecksumError):
        fetch_verified(src.as_uri(), "0" * 64, dest)
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []


def test_canonical_local_copy_is_verified(tmp_path: Path) -> None:
    fake = tmp_path / "test.csv"
    fake.write_text("not the canonical file\n")
    with pytest.raises(ChecksumError, match="not the canonical mp_20/test"):
        canonical_path("mp_20/test", tmp_path, local_path=fake)
    with pytest.raises(KeyError, match="unknown canonical dataset"):
        canonical_path("mp_21/test", tmp_path)
    assert len(sha256_of(fake)) == 64
