"""Room for a batch's results, checked before anything is paid.

The output folder and the journal's folder must each take a file, and the disk must hold the
plan's videos (a conservative estimate per video, less the videos already in the folder: a
rerun needs room only for what is missing) plus the journal, with some to spare. Blocking
file-system calls: run in a worker thread. ``free`` is injectable for tests.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from emoclient._exceptions import DiskFullError, JournalError

__all__ = [
    "JOURNAL_BYTES_PER_JOB",
    "SPARE_BYTES",
    "FreeSpace",
    "check_room",
    "free_bytes",
    "human_bytes",
]

#: A journal row with its events, uploads and detections takes well under this.
JOURNAL_BYTES_PER_JOB = 8 * 1024
#: Kept free beyond the plan: SQLite's temporary files, other programs.
SPARE_BYTES = 64 * 1024 * 1024

FreeSpace = Callable[[Path], int]


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged program may still write on the file system of ``path``."""
    return shutil.disk_usage(path).free


def human_bytes(count: float) -> str:
    """``count`` bytes in the largest fitting unit, e.g. ``"1.2 GB"``."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def check_room(
    out_dir: Path,
    journal: Path,
    *,
    video_bytes: int,
    jobs: int,
    free: FreeSpace = free_bytes,
) -> None:
    """Raise :class:`JournalError` when ``out_dir`` or the journal's folder cannot take a
    file, :class:`DiskFullError` when their disks cannot hold ``video_bytes`` of videos (less
    those already in ``out_dir``) and the journal of ``jobs`` jobs. Creates ``out_dir``."""
    folders = {"out": out_dir, "journal": journal.parent}
    for role, folder in folders.items():
        _check_writable(folder, role)
    needed = {
        "out": max(0, video_bytes - _videos_in(out_dir)),
        "journal": jobs * JOURNAL_BYTES_PER_JOB,
    }
    if _same_disk(out_dir, journal.parent):
        needed = {"out": needed["out"] + needed["journal"]}
    for role, want in needed.items():
        folder = folders[role]
        have = free(folder)
        if want + SPARE_BYTES > have:
            raise DiskFullError(
                _message(role, folder, want, have, jobs),
                path=str(folder),
                needed=want + SPARE_BYTES,
                free=have,
            )


def _message(role: str, folder: Path, want: int, have: int, jobs: int) -> str:
    what = f"{jobs} video(s)" if role == "out" else f"the journal of {jobs} job(s)"
    flag = "--out" if role == "out" else "--journal"
    total = want + SPARE_BYTES
    return (
        f"not enough free space in {folder}: {what} need about {human_bytes(total)} "
        f"({total} bytes, with {human_bytes(SPARE_BYTES)} to spare) and "
        f"{human_bytes(have)} ({have} bytes) are free; free some space or choose another "
        f"folder ({flag}); nothing was submitted"
    )


def _check_writable(folder: Path, role: str) -> None:
    flag = "--out" if role == "out" else "--journal"
    probe = folder / f".emoclient-write-test-{uuid.uuid4().hex[:12]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with probe.open("xb") as stream:
            stream.write(b"emoclient")
        probe.unlink()
    except OSError as exc:
        raise JournalError(
            f"cannot write into {folder} ({exc.strerror or exc}); make it writable or choose "
            f"another folder ({flag}); nothing was submitted"
        ) from exc


def _videos_in(folder: Path) -> int:
    total = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.lower().endswith(".mp4") and entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0
    return total


def _same_disk(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False
