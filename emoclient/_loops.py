"""One object per event loop, for what asyncio binds to the loop that first used it.

A store or a limiter is shared by every client of an account in a process, and a process
may run several event loops: a :class:`~emoclient.BlockingEmoClient` runs one in a thread
beside the app's own, and a script may call ``asyncio.run`` twice. Locks, events, capacity
limiters and connections must not cross loops, so each loop gets its own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio.lowlevel

__all__ = ["PerLoop"]

_T = TypeVar("_T")


class PerLoop(Generic[_T]):
    """``factory()`` made once per running event loop, and forgotten once the loop is gone."""

    def __init__(self, factory: Callable[[], _T]) -> None:
        self._factory = factory
        self._items: dict[int, tuple[weakref.ref[Any], _T]] = {}
        self._guard = threading.Lock()

    def get(self) -> _T:
        """The object of the running loop."""
        loop = _native_loop()
        with self._guard:
            found = self._items.get(id(loop))
            if found is not None and found[0]() is loop:
                return found[1]
            for key in [k for k, (ref, _) in self._items.items() if _gone(ref())]:
                del self._items[key]
            item = self._factory()
            self._items[id(loop)] = (weakref.ref(loop), item)
            return item

    def current(self) -> _T | None:
        """The running loop's object if it has one yet, without making it."""
        loop = _native_loop()
        with self._guard:
            found = self._items.get(id(loop))
        return found[1] if found is not None and found[0]() is loop else None

    def __len__(self) -> int:
        """How many loops' objects are kept (closed loops' go at the next ``get``)."""
        with self._guard:
            return len(self._items)

    def clear(self) -> None:
        """Forget every loop's object."""
        with self._guard:
            self._items.clear()


def _native_loop() -> Any:
    token = anyio.lowlevel.current_token()
    return getattr(token, "native_token", token)


def _gone(loop: Any) -> bool:
    if loop is None:
        return True
    is_closed = getattr(loop, "is_closed", None)
    return bool(is_closed()) if is_closed is not None else False
