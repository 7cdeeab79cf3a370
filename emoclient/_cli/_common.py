"""What ``emoclient batch`` and ``emoclient demo`` share: the options of a run, the command
that runs it again, and which errors get a message instead of a traceback. Light: no client
code is imported here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

if TYPE_CHECKING:
    from emoclient._batch.space import FreeSpace

__all__ = [
    "BatchOptions",
    "Mode",
    "command_name",
    "error_leaves",
    "expected_failure",
    "expected_failures",
    "free_bytes",
]

Mode = Literal["tty", "plain", "json"]


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged program may still write on the disk of ``path``
    (:func:`emoclient._batch.space.free_bytes`, loaded when first asked)."""
    from emoclient._batch import space

    return space.free_bytes(path)


@dataclass(slots=True)
class BatchOptions:
    """What to run and how; ``api_key``/``base_url`` None means the environment's."""

    manifest: Path
    out: Path
    window: int | None = None
    journal: Path | None = None
    json: bool = False
    retry_failed: bool = False
    api_key: str | None = None
    base_url: str | None = None
    store: str | None = None
    api_key_file: Path | None = None
    #: Free bytes on a folder's disk (tests inject one).
    free_space: FreeSpace = free_bytes
    err: TextIO = field(default_factory=lambda: sys.stderr)
    out_stream: TextIO = field(default_factory=lambda: sys.stdout)

    @property
    def mode(self) -> Mode:
        if self.json:
            return "json"
        return "tty" if self.err.isatty() else "plain"

    def command(self, *extra: str) -> str:
        """The shell command that runs this batch again (with ``extra`` flags)."""
        words = [str(self.manifest), "--out", str(self.out)]
        for flag, value in (
            ("--journal", self.journal),
            ("--store", self.store),
            ("--api-key-file", self.api_key_file),
            ("--window", self.window),
        ):
            if value is not None:
                words += [flag, str(value)]
        return f"{command_name()} batch {shlex.join([*words, *extra])}"


def command_name() -> str:
    """How to type ``emoclient`` in this shell: the bare name when ``PATH`` finds this
    installation, else the script's path (``.venv/bin/emoclient`` after ``make demo``)."""
    script = Path(sys.prefix) / "bin" / "emoclient"
    found = shutil.which("emoclient")
    if found is not None and _same(Path(found), script):
        return "emoclient"
    if not script.exists():
        return f"{shlex.quote(sys.executable)} -m emoclient"
    if _same(Path(sys.prefix).parent, Path.cwd()):  # in the project of its venv: make demo
        return shlex.quote(str(script.relative_to(Path(sys.prefix).parent)))
    return shlex.quote(str(script))


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def expected_failure(exc: BaseException) -> BaseException | None:
    """The error inside ``exc`` worth a message rather than a traceback (file, journal)."""
    causes = expected_failures(exc)
    return causes[0] if len(causes) == 1 else None


def expected_failures(exc: BaseException) -> list[BaseException]:
    """The errors inside ``exc`` (a group's leaves) when each is worth a message rather
    than a traceback: files, the journal, the store, the service; else none."""
    from emoclient._batch.manifest import ManifestError
    from emoclient._exceptions import EmoError

    leaves = error_leaves(exc)
    if all(isinstance(e, OSError | EmoError | ManifestError) for e in leaves):
        return leaves
    return []


def error_leaves(exc: BaseException) -> list[BaseException]:
    """The errors inside ``exc``: a group's leaves, else ``exc`` alone."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in error_leaves(inner)]
    return [exc]
