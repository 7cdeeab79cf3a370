"""The only user of ``aiohttp.ClientSession``: auth, limits, retries and error mapping.

``Authorization`` goes only to API calls under the base URL; uploads and result downloads go
out without it. Every aiohttp/asyncio failure becomes an :mod:`emoclient` error here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import anyio

from emoclient._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConnectError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmitOutcomeUnknownError,
    TransportError,
)
from emoclient._limits import RateLimiter
from emoclient._retry import RetryPolicy, is_retryable_status, parse_retry_after

__all__ = ["Transport", "error_from_response", "map_client_error", "redact_url"]

logger = logging.getLogger("emoclient")

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
_XML_FIELD = re.compile(r"<(Code|Message|RequestId)>(.*?)</\1>", re.S)
Sleep = Callable[[float], Awaitable[None]]


def _error_fields(status: int, text: str) -> tuple[str, str, str | None]:
    """``(code, message, request_id)`` from a JSON or OSS-XML error body."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or f"HTTP{status}")
        message = str(body.get("message") or "no message")
        return code, message, body.get("request_id")
    xml = dict(_XML_FIELD.findall(text))
    if xml:
        return xml.get("Code", f"HTTP{status}"), xml.get("Message", ""), xml.get("RequestId")
    return f"HTTP{status}", text[:200] or "empty response body", None


def error_from_response(
    status: int, text: str, headers: Mapping[str, str], *, operation: str
) -> APIStatusError:
    """The typed error for an HTTP error answer (JSON envelope or OSS XML)."""
    code, message, request_id = _error_fields(status, text)
    request_id = request_id or headers.get("X-Request-ID")
    if status == 429:
        return RateLimitError(
            status,
            code=code,
            message=message,
            request_id=request_id,
            operation=operation,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    cls = ServerError if status >= 500 else _STATUS_ERRORS.get(status, BadRequestError)
    return cls(status, code=code, message=message, request_id=request_id, operation=operation)


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
            f"No complete answer to {where} in time; raise the client's timeout or retry later.",
            method=method,
            url=url,
        )
    return TransportError(
        f"The connection broke during {where}: {type(exc).__name__}: {exc}. Retry later.",
        method=method,
        url=url,
    )


def redact_url(url: str) -> str:
    # Signed result URLs carry credentials in the query string; keep them out of messages.
    return url.split("?", 1)[0]


class Transport:
    """HTTP for one client: API calls with auth, limits and retries; bare uploads/downloads."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        workspace: str | None,
        timeout: float,
        session: aiohttp.ClientSession | None,
        retry: RetryPolicy,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._workspace = workspace
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None
        self.retry = retry
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use when the caller passed none."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def aclose(self) -> None:
        """Close the session if this transport created it; a caller's session stays open."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _api_headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"}
        if self._workspace:
            headers["X-DashScope-WorkSpace"] = self._workspace
        headers.update(extra or {})
        return headers

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        json_body: Any,
    ) -> dict[str, Any]:
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                params=params,
                json=json_body,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                text = await resp.text(errors="replace")
                status, resp_headers = resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_client_error(exc, method=method, url=url) from exc
        logger.debug("%s %s -> %s", method, redact_url(url), status)
        if status >= 400:
            raise error_from_response(status, text, resp_headers, operation=operation)
        try:
            body = json.loads(text) if text else {}
        except ValueError as exc:
            raise ServerError(
                status,
                code="InvalidResponse",
                message=f"answer is not JSON: {text[:120]!r}",
                request_id=resp_headers.get("X-Request-ID"),
                operation=operation,
            ) from exc
        if not isinstance(body, dict):
            raise ServerError(
                status,
                code="InvalidResponse",
                message="answer is not a JSON object",
                request_id=None,
                operation=operation,
            )
        return body

    async def call(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        limiter: RateLimiter | None,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API read (or idempotent call), retried on 429/5xx/transport errors."""
        return await self._request(
            method,
            path,
            operation=operation,
            limiter=limiter,
            params=params,
            json_body=json_body,
            headers=headers,
            classify=_read_retry,
        )

    async def submit(
        self,
        path: str,
        *,
        model: str,
        operation: str,
        limiter: RateLimiter | None,
        json_body: Any,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a task; retried only when no task can have been created.

        A 429 or a refused connection is retried; a 5xx, a timeout or a dropped connection
        after sending raises :class:`SubmitOutcomeUnknownError` instead.
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

        return await self._request(
            "POST",
            path,
            operation=operation,
            limiter=limiter,
            params=None,
            json_body=json_body,
            headers=headers,
            classify=classify,
        )

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        limiter: RateLimiter | None,
        params: Mapping[str, str] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        classify: Callable[[APIStatusError | TransportError], tuple[bool, float | None]],
    ) -> dict[str, Any]:
        """The one retry loop: ``classify`` says whether a failure may be sent again (and the
        server's Retry-After), or raises the error that replaces it."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        all_headers = self._api_headers(headers)
        attempt = 0
        while True:
            if limiter is not None:
                await limiter.acquire()
            try:
                return await self._send_once(
                    method,
                    url,
                    operation=operation,
                    headers=all_headers,
                    params=params,
                    json_body=json_body,
                )
            except (APIStatusError, TransportError) as exc:
                retryable, retry_after = classify(exc)
                if not retryable or not self.retry.should_retry(attempt):
                    raise
            await self._sleep(self.retry.delay(attempt, retry_after=retry_after))
            attempt += 1

    @asynccontextmanager
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, read_timeout: float = 60.0
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET a result URL without credentials; the caller reads and checks the response."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=read_timeout)
        try:
            async with self.session.get(url, headers=dict(headers or {}), timeout=timeout) as resp:
                yield resp
        except (aiohttp.ClientConnectorError, TimeoutError) as exc:
            raise map_client_error(exc, method="GET", url=url) from exc

    async def post_form(self, url: str, data: aiohttp.FormData, *, operation: str) -> None:
        """POST a multipart form (temporary-storage upload) without credentials."""
        try:
            async with self.session.post(url, data=data, timeout=self._timeout) as resp:
                text = await resp.text(errors="replace")
                if resp.status >= 300:
                    raise error_from_response(resp.status, text, resp.headers, operation=operation)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_client_error(exc, method="POST", url=url) from exc


def _read_retry(exc: APIStatusError | TransportError) -> tuple[bool, float | None]:
    """Whether a read may be retried, and the server's Retry-After seconds if it gave one."""
    if isinstance(exc, TransportError):
        return True, None
    if not is_retryable_status(exc.status, exc.code):
        return False, None
    return True, exc.retry_after if isinstance(exc, RateLimitError) else None


def _unknown(
    exc: ServerError | TransportError, *, model: str, started: datetime
) -> SubmitOutcomeUnknownError:
    reason = f"HTTP {exc.status} {exc.code}" if isinstance(exc, ServerError) else type(exc).__name__
    return SubmitOutcomeUnknownError(
        model=model, started_at=started, ended_at=datetime.now(UTC), reason=reason
    )
