"""Completed calculations carried between machines: a work directory's results, packed.

A competing phase is computed once per settings (:mod:`tasks.dft.recomputed_hull`), but
only the machine whose work directory holds it knows that. :func:`export_completed` packs
every completed calculation's records (``calcs/<id>/calc.json``, ``state.json``) and the job
documents of its completed attempt (``store/<id>-<n>.json`` and ``.data.json``) into one
``.tar.xz``, without the run directories (CP2K's wavefunction restart alone is megabytes per
calculation). :func:`import_completed` adds an archive's calculations to another work
directory where it has no result of its own: phases computed on a cluster place candidates
on a laptop, and a long calibration goes on where another machine stopped.

Archives are reproducible (members sorted, no times or owners), so an unchanged set of
calculations exports to the same bytes wherever its files were written.
"""

from __future__ import annotations

import re
import tarfile
from collections import defaultdict
from functools import partial
from pathlib import Path

from filelock import FileLock

from tasks.core.atomic import atomic_write
from tasks.dft.settings import CalcSettings
from tasks.dft.workdir import (
    ACTIVE,
    COMPLETED,
    LOCK,
    CalcInput,
    CalcState,
    calc_dir,
    list_calcs,
    made_with,
    read_state,
    store_paths,
)

_ID = r"[0-9a-f]+-[0-9a-f]+"
#: The only members an archive may hold: a calculation's two records and its job store.
_MEMBER = re.compile(
    rf"calcs/(?P<calc>{_ID})/(?:calc|state)\.json|store/(?P<store>{_ID})-\d+(?:\.data)?\.json"
)


class ArchiveError(ValueError):
    """An archive holds something other than completed calculations' records."""


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    info.mode = 0o644
    return info


def export_completed(
    workdir: Path, archive: Path, settings: CalcSettings | None = None
) -> list[str]:
    """Pack the completed calculations of ``workdir`` into ``archive`` (``.tar.xz``).

    A calculation marked completed whose job store is missing is left out (it could not be
    placed here either).

    Parameters
    ----------
    workdir
        A DFT work directory.
    archive
        The file to write (atomically; an unchanged archive keeps its file).
    settings
        Pack only the calculations made with these settings (a references directory holds
        every settings' phases).

    Returns
    -------
    list of str
        The calculation ids packed.

    Raises
    ------
    FileNotFoundError
        ``workdir`` does not exist.
    """
    workdir = Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"no DFT work directory {workdir}")
    packed: list[str] = []
    files: list[Path] = []
    for calc_id in list_calcs(workdir):
        state = read_state(workdir, calc_id)
        if settings is not None and not made_with(calc_id, settings):
            continue
        if state is None or state.status != COMPLETED:
            continue
        docs, data = store_paths(workdir, calc_id, state.attempt)
        if not docs.is_file():
            continue
        folder = calc_dir(workdir, calc_id)
        files += [folder / "calc.json", folder / "state.json", docs]
        files += [data] if data.is_file() else []
        packed.append(calc_id)

    def pack(path: Path) -> None:
        with tarfile.open(path, "w:xz") as tar:
            for file in sorted(files):
                tar.add(file, arcname=file.relative_to(workdir).as_posix(), filter=_normalized)

    atomic_write(archive, pack, keep_identical=True)
    return packed


def _members_by_calc(tar: tarfile.TarFile, archive: Path) -> dict[str, list[tarfile.TarInfo]]:
    """The archive's members grouped by calculation; anything else is an error."""
    grouped: dict[str, list[tarfile.TarInfo]] = defaultdict(list)
    for info in tar.getmembers():
        match = _MEMBER.fullmatch(info.name)
        if not info.isfile() or match is None:
            raise ArchiveError(
                f"{archive}: member {info.name!r} is not a calculation record or job store "
                "(an archive of export_completed holds calcs/<id>/calc.json, state.json and "
                "store/<id>-<n>.json files only)"
            )
        grouped[match.group("calc") or match.group("store")].append(info)
    return grouped


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    if handle is None:  # a regular file always has one
        raise ArchiveError(f"member {info.name!r} cannot be read")
    return handle.read()


def _check_records(archive: Path, calc_id: str, files: dict[str, bytes]) -> int:
    """The calculation's records parse, name it and say it completed; its attempt."""
    try:
        record = CalcInput.model_validate_json(files[f"calcs/{calc_id}/calc.json"])
        state = CalcState.model_validate_json(files[f"calcs/{calc_id}/state.json"])
    except (KeyError, ValueError) as err:
        raise ArchiveError(f"{archive}: calculation {calc_id}: unreadable records: {err}") from err
    if record.calc_id != calc_id or state.status != COMPLETED:
        raise ArchiveError(
            f"{archive}: calculation {calc_id}: its records describe {record.calc_id}, "
            f"status {state.status}; only completed calculations are carried"
        )
    if f"store/{calc_id}-{state.attempt}.json" not in files:
        raise ArchiveError(f"{archive}: calculation {calc_id}: no job store of its attempt")
    return state.attempt


def _has_own_result(workdir: Path, calc_id: str) -> bool:
    """Whether ``workdir`` keeps its own version of a calculation: completed, or submitted
    to SLURM and perhaps running there. A local run holds the directory's lock while it
    computes, so under that lock a local calculation still marked active is a killed run's."""
    here = read_state(workdir, calc_id)
    if here is None:
        return False
    return here.status == COMPLETED or (here.status in ACTIVE and bool(here.slurm_id))


def import_completed(archive: Path, workdir: Path) -> list[str]:
    """Add the archive's completed calculations to ``workdir``, holding its lock.

    A calculation ``workdir`` has completed, or has submitted to SLURM, is left as it is;
    one that failed there, was never submitted or was left running by a killed local run
    takes the archive's result (its ``calc.json`` is kept: the same id is the same
    structure and settings). The whole archive is checked before anything is added.

    Parameters
    ----------
    archive
        A ``.tar.xz`` written by :func:`export_completed`.
    workdir
        The DFT work directory to add them to (created if missing).

    Returns
    -------
    list of str
        The calculation ids added.

    Raises
    ------
    ArchiveError
        The archive holds another kind of file, or a record that does not describe a
        completed calculation under its own id.
    """
    workdir = Path(workdir)
    with tarfile.open(archive, "r:xz") as tar:
        grouped = _members_by_calc(tar, archive)
        contents = {
            calc_id: {info.name: _read(tar, info) for info in members}
            for calc_id, members in grouped.items()
        }
    attempts = {calc_id: _check_records(archive, calc_id, f) for calc_id, f in contents.items()}
    added: list[str] = []
    workdir.mkdir(parents=True, exist_ok=True)
    with FileLock(workdir / LOCK):
        for calc_id, files in sorted(contents.items()):
            if _has_own_result(workdir, calc_id):
                continue
            for stale in store_paths(workdir, calc_id, attempts[calc_id]):
                stale.unlink(missing_ok=True)
            record = f"calcs/{calc_id}/calc.json"
            state = f"calcs/{calc_id}/state.json"
            kept = (workdir / record).is_file()
            for name in [*sorted(set(files) - {record, state}), record, state]:
                if name == record and kept:
                    continue
                atomic_write(workdir / name, partial(Path.write_bytes, data=files[name]))
            added.append(calc_id)
    return added
