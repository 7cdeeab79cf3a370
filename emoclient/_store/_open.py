"""Choosing the account store: ``store=...``, ``EMOCLIENT_STORE``, or the user's SQLite file."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from emoclient._store._memory import MemoryStore
from emoclient._store._protocol import AccountStore
from emoclient._store._redis import RedisStore
from emoclient._store._sqlite import SQLiteStore

__all__ = ["DEFAULT_FILENAME", "default_home", "default_store_path", "open_store"]

logger = logging.getLogger("emoclient")

DEFAULT_FILENAME = "store.sqlite3"

_FORMS = (
    "'memory', a file path (e.g. ~/shared/emoclient.sqlite3 or sqlite:///abs/path.sqlite3), "
    "or redis://[user:password@]host:port/db (rediss:// for TLS)"
)
_PATH_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_warned: set[Path] = set()


def default_home() -> Path:
    """``EMOCLIENT_HOME``, else this user's cache folder for emoclient on this platform."""
    configured = os.environ.get("EMOCLIENT_HOME")
    if configured:
        return Path(configured).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "emoclient" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "emoclient"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative path.
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "emoclient"


def default_store_path(home: str | os.PathLike[str] | None = None) -> Path:
    """The default store file: ``store.sqlite3`` in ``home`` or :func:`default_home`."""
    return (Path(home).expanduser() if home is not None else default_home()) / DEFAULT_FILENAME


def open_store(
    spec: str | os.PathLike[str] | None = None, *, home: str | os.PathLike[str] | None = None
) -> AccountStore:
    """The account store named by ``spec``, else ``EMOCLIENT_STORE``, else the default file.

    ``spec`` is ``"memory"`` (this process only), a SQLite file (a path, or
    ``sqlite:///abs/path``), or a Redis URL (``redis://host:port/db``, ``rediss://...``).
    The default is :func:`default_store_path` under ``home``; when that folder cannot be
    written, a warning is logged once and the store lives in memory. Nothing connects until
    the first call. Raises ValueError for a spec of none of these forms.
    """
    source = "store"
    if spec is None:
        spec = os.environ.get("EMOCLIENT_STORE") or None
        source = "EMOCLIENT_STORE"
    if spec is None:
        return _default_store(default_store_path(home))
    if isinstance(spec, os.PathLike):
        return SQLiteStore(spec)
    return _parse(spec, source)


def _parse(spec: str, source: str) -> AccountStore:
    text = spec.strip()
    scheme, sep, rest = text.partition("://")
    if text.lower() == "memory":
        return MemoryStore()
    if sep and scheme.lower() in ("redis", "rediss") and rest:
        return RedisStore(text)
    if sep and scheme.lower() == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return SQLiteStore(rest)
    if not sep and text and _looks_like_path(text):
        return SQLiteStore(Path(text).expanduser())
    raise ValueError(f"unknown account store {source}={spec!r}: use {_FORMS}")


def _looks_like_path(text: str) -> bool:
    # A bare word is more likely a typo ("memroy", "redis") than a file in the current folder.
    return (
        text.startswith(("~", "."))
        or "/" in text
        or os.sep in text
        or text.lower().endswith(_PATH_SUFFIXES)
    )


def _default_store(path: Path) -> AccountStore:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.open("ab").close()
    except OSError as exc:
        if path not in _warned:
            _warned.add(path)
            logger.warning(
                "cannot write the account store %s (%s): rate limits and the task window are "
                "shared only inside this process. Set EMOCLIENT_HOME to a writable folder, or "
                "EMOCLIENT_STORE to a file or redis:// URL, to share them with other processes",
                path,
                exc,
            )
        return MemoryStore()
    return SQLiteStore(path)
