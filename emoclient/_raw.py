"""Raw answers: the HTTP status, headers and request id of a call, beside its parsed value.

The transport notes each API answer it accepts (:func:`note_answer`) in a context variable
that only :func:`raw_call` sets, so the ordinary calls take no extra parameter and keep
nothing. No I/O here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Generic, NamedTuple, ParamSpec, TypeVar

__all__ = ["RawResponse", "note_answer", "raw_call"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class _Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]
    request_id: str | None


_answers: ContextVar[list[_Answer] | None] = ContextVar("emoclient_raw_answers", default=None)


def note_answer(status: int, headers: Mapping[str, str], request_id: str | None) -> None:
    """Keep an accepted API answer for the :func:`raw_call` running in this context, if any."""
    seen = _answers.get()
    if seen is not None:
        seen.append(_Answer(status, headers, request_id))


class RawResponse(Generic[_T]):
    """An API call's HTTP answer: ``status``, ``headers`` and ``request_id``; :meth:`parse`
    gives what the plain call returns.

    ``headers`` are those of the answer the value was read from (the last attempt when the
    request was retried), case-insensitive. ``request_id`` is the service's id of the request
    (the answer's ``request_id``, else its ``X-Request-ID`` header): quote it to support.
    """

    def __init__(
        self, value: _T, *, status: int, headers: Mapping[str, str], request_id: str | None
    ) -> None:
        self.status = status
        self.headers = headers
        self.request_id = request_id
        self._value = value

    def __repr__(self) -> str:
        return f"RawResponse(status={self.status}, request_id={self.request_id!r})"

    def parse(self) -> _T:
        """The value the plain call returns (already parsed and checked)."""
        return self._value


def raw_call(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Awaitable[RawResponse[_T]]]:
    """``method`` (one API request) returning a :class:`RawResponse` of the answer it read."""

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> RawResponse[_T]:
        seen: list[_Answer] = []
        token = _answers.set(seen)
        try:
            value = await method(*args, **kwargs)
        finally:
            _answers.reset(token)
        status, headers, request_id = seen[-1]
        return RawResponse(value, status=status, headers=headers, request_id=request_id)

    return call
