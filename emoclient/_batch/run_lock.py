"""One batch at a time per output folder and per journal.

Two runs on one journal would submit the same jobs twice; two runs into one output folder
(with two journals) would render and pay for the same videos twice and overwrite each
other's files. Each run holds an exclusive ``flock`` on a lock file beside the journal and
one in the output folder. ``flock`` dies with its process, so a run killed with SIGKILL
never leaves a stale lock behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from emoclient._exceptions import BatchBusyError, JournalError

__all__ = ["OUT_LOCK_NAME", "RunLock"]

OUT_LOCK_NAME = ".emoclient-batch.lock"


class RunLock:
    """Exclusive locks on ``out_dir`` and ``journal``; blocking calls (run in a thread)."""

    def __init__(self, *, out_dir: Path, journal: Path) -> None:
        paths = [out_dir / OUT_LOCK_NAME, journal.with_name(journal.name + ".lock")]
        self._paths = list(dict.fromkeys(paths))
        self._what = {paths[0]: f"the output folder {out_dir}", paths[1]: f"the journal {journal}"}
        self._handles: list[IO[str]] = []

    def acquire(self) -> None:
        """Take every lock, or raise :class:`BatchBusyError` saying who holds which."""
        try:
            for path in self._paths:
                self._handles.append(self._take(path))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Give every lock back."""
        while self._handles:
            handle = self._handles.pop()
            handle.truncate(0)
            handle.close()  # closing the file releases its flock

    def _take(self, path: Path) -> IO[str]:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX (Windows): no guard
            return open(os.devnull, "a+", encoding="utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise JournalError(
                f"cannot write into {path.parent} ({exc.strerror or exc}); "
                "choose another output folder (--out) or journal (--journal)"
            ) from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise BatchBusyError(
                f"another emoclient batch (pid {holder}) is using {self._what[path]}; "
                "wait for it to finish, or stop it (Ctrl-C), before running this one"
            ) from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle
