"""What one request may ask beyond the client's defaults: a :class:`Timeout`, extra headers,
a number of retries. Checked here, before anything is sent. Pure, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from emoclient._retry import RetryPolicy

__all__ = [
    "NO_OPTIONS",
    "RequestOptions",
    "Timeout",
    "as_timeout",
    "call_options",
    "checked_headers",
    "retry_with",
]

# Line breaks would let a header value start a header (or a request) of its own.
_FORBIDDEN_IN_HEADERS = ("\r", "\n", "\0")


def _check_seconds(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"Timeout {name}= must be seconds (a number) or None, got {value!r}")
    if not 0 < value < math.inf:
        raise ValueError(f"Timeout {name}= must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True)
class Timeout:
    """Time limits of one attempt at an API request, in seconds; ``None`` lifts a limit.

    ``total`` bounds the whole attempt (connecting, sending, reading the complete answer),
    ``connect`` opening the connection, ``read`` each wait for more of the answer; they map
    onto ``aiohttp.ClientTimeout(total=, sock_connect=, sock_read=)``. Wherever a timeout is
    accepted, a plain number means ``Timeout(total=number)``. A retried request gets these
    limits for each attempt. ``total`` or ``read`` must stay set, so that every request ends.
    """

    total: float | None = 60.0
    connect: float | None = None
    read: float | None = None

    def __post_init__(self) -> None:
        for name in ("total", "connect", "read"):
            _check_seconds(name, getattr(self, name))
        if self.total is None and self.read is None:
            raise ValueError(
                "Timeout(total=None) needs read= seconds, or a stalled answer would never end"
            )


def as_timeout(value: float | Timeout) -> Timeout:
    """``value`` as a :class:`Timeout`; a number is the total."""
    if isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"timeout must be seconds (a number) or a Timeout, got {value!r}")
    return Timeout(total=value)


def checked_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Extra headers as a new dict; refuses ``Authorization`` and line breaks."""
    checked: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"extra header {name!r}: names and values must be str")
        if name.strip().lower() == "authorization":
            raise ValueError(
                "extra_headers may not set Authorization: the client sends its own API key "
                "(make an EmoClient with api_key= to use another key)"
            )
        if any(c in name or c in value for c in _FORBIDDEN_IN_HEADERS):
            raise ValueError(f"extra header {name!r} contains a line break or a NUL; remove it")
        checked[name] = value
    return checked


@dataclass(frozen=True)
class RequestOptions:
    """What one call asks for itself: its timeout (None: the client's) and extra headers."""

    timeout: Timeout | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


NO_OPTIONS = RequestOptions()


def call_options(
    timeout: float | Timeout | None, extra_headers: Mapping[str, str] | None
) -> RequestOptions:
    """The checked options of one call; raises before anything is sent."""
    if timeout is None and not extra_headers:
        return NO_OPTIONS
    return RequestOptions(
        timeout=None if timeout is None else as_timeout(timeout),
        headers=checked_headers(extra_headers),
    )


def retry_with(policy: RetryPolicy | None, max_retries: int | None) -> RetryPolicy:
    """``policy`` (default ``RetryPolicy()``) with ``max_retries + 1`` attempts, if given."""
    policy = policy or RetryPolicy()
    if max_retries is None:
        return policy
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a whole number >= 0, got {max_retries!r}")
    return replace(policy, max_attempts=max_retries + 1)
