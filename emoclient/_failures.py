"""What a failed request means: an aiohttp/asyncio failure as an :mod:`emoclient` error, and
whether a failed read or submit may be sent again. No I/O; the transport's loop asks here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from emoclient._answers import redact_url, scrub_urls
from emoclient._exceptions import (
    APIStatusError,
    ConnectError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from emoclient._log import logger
from emoclient._retry import is_retryable_status

__all__ = ["Classifier", "brief", "map_client_error", "read_retry", "submit_retry"]

Classifier = Callable[[APIStatusError | TransportError], tuple[bool, float | None]]
"""Whether a failure may be sent again (and the server's Retry-After), or raise another error."""


def map_client_error(exc: BaseException, *, method: str, url: str) -> TransportError:
    """The typed error for an aiohttp/asyncio failure that produced no HTTP answer."""
    where = f"{method} {redact_url(url)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(
            f"Could not connect for {where}: {exc.os_error}. Check the base URL and network.",
            method=method,
            url=url,
        )
    if isinstance(exc, TimeoutError):  # asyncio.TimeoutError is TimeoutError since 3.11
        return RequestTimeoutError(
            f"No complete answer to {where} in time; raise the timeout or retry later.",
            method=method,
            url=url,
        )
    # aiohttp's own text may quote the URL (with its signature) or the bytes it choked on.
    detail = scrub_urls(str(exc))[:200]
    return TransportError(
        f"The connection broke during {where}: {type(exc).__name__}: {detail}. Retry later.",
        method=method,
        url=url,
    )


def brief(exc: APIStatusError | TransportError) -> str:
    """A failure in a few words for a log line."""
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status} {exc.code}, request_id={exc.request_id}"
    cause = exc.__cause__
    return type(exc).__name__ + (f": {type(cause).__name__}" if cause is not None else "")


def read_retry(exc: APIStatusError | TransportError) -> tuple[bool, float | None]:
    """Whether a read may be retried, and the server's Retry-After seconds if it gave one."""
    if isinstance(exc, TransportError):
        return True, None
    if not is_retryable_status(exc.status, exc.code):
        return False, None
    return True, exc.retry_after if isinstance(exc, RateLimitError) else None


def submit_retry(model: str) -> Classifier:
    """A submit's classifier: retried only when no task can have been created.

    A 429 or a refused connection is retried; a 5xx, a timeout, a dropped connection after
    sending or a garbled answer raises :class:`SubmitOutcomeUnknownError` instead.
    """
    started = datetime.now(UTC)

    def classify(exc: APIStatusError | TransportError) -> tuple[bool, float | None]:
        if isinstance(exc, ConnectError):
            return True, None  # the connection never opened: nothing was sent
        if isinstance(exc, ServerError | TransportError):
            raise _unknown(exc, model=model, started=started) from exc
        if isinstance(exc, RateLimitError):
            return is_retryable_status(429, exc.code), exc.retry_after  # no task was made
        return False, None

    return classify


def _unknown(
    exc: ServerError | TransportError, *, model: str, started: datetime
) -> SubmitOutcomeUnknownError:
    reason = (
        f"HTTP {exc.status} {exc.code}, request_id={exc.request_id}"
        if isinstance(exc, ServerError)
        else type(exc).__name__
    )
    logger.warning("submitting a %s task: outcome unknown (%s); a task may exist", model, reason)
    return SubmitOutcomeUnknownError(
        model=model, started_at=started, ended_at=datetime.now(UTC), reason=reason
    )
