"""The only user of ``aiohttp.ClientSession``: auth, limits, retries and error mapping.

``Authorization`` and extra headers go only to API calls under the base URL; uploads and
result downloads go out without them. Every aiohttp/asyncio failure becomes an
:mod:`emoclient` error here (by :mod:`emoclient._failures`), and every HTTP retry happens in
:meth:`Transport._request`, the one retry loop.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import anyio
from multidict import CIMultiDict

from emoclient._activity import ClientActivity, kind_of_path
from emoclient._answers import (
    decode,
    error_from_response,
    json_object,
    redact_url,
    request_id_of,
    scrub_urls,
)
from emoclient._exceptions import APIStatusError, ConfigurationError, TransportError
from emoclient._failures import Classifier, brief, map_client_error, read_retry, submit_retry
from emoclient._limits import RateLimiter
from emoclient._log import logger, switch_on_from_env
from emoclient._options import NO_OPTIONS, RequestOptions, Timeout, as_timeout, checked_headers
from emoclient._raw import note_answer
from emoclient._retry import RetryPolicy
from emoclient._settings import DEFAULT_BASE_URL, bytes_from_env

__all__ = [
    "Transport",
    "error_from_response",
    "map_client_error",
    "redact_url",
    "scrub_urls",
]

_KIB = 1024
_MIB = 1024 * 1024
#: JSON answers above this are refused unread (``EMOCLIENT_MAX_JSON_MB``); the largest
#: documented answer, a 100-row task page, is a few tens of KiB.
DEFAULT_MAX_JSON_BYTES = 4 * _MIB
#: Result videos above this are refused (``EMOCLIENT_DOWNLOAD_MAX_MB``); the longest EMO
#: video (60 s of 512x704 H.264) is a few tens of MiB.
DEFAULT_MAX_DOWNLOAD_BYTES = 1024 * _MIB
#: A transfer slower than this on average misses its deadline (``EMOCLIENT_DOWNLOAD_MIN_KBPS``
#: for downloads, in KiB/s); uploads get the same allowance.
DEFAULT_MIN_SPEED = 64 * _KIB
# Of an error answer only the start is read: its code and message are at the top.
_ERROR_BYTES = 64 * _KIB
_CHUNK = 64 * _KIB
# OSS's answers to a form POST whose key exists and may not be overwritten.
_ALREADY_STORED = frozenset({"FileAlreadyExists", "ObjectAlreadyExists"})
_T = TypeVar("_T")
Sleep = Callable[[float], Awaitable[None]]


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Up to ``limit`` bytes of the body, and whether that was all; the rest is never read."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), False
    return bytes(body), True


def _client_timeout(timeout: Timeout) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=timeout.total, sock_connect=timeout.connect, sock_read=timeout.read
    )


class _SharedSession:
    """The aiohttp session of a transport and its copies, made on first use."""

    def __init__(self, session: aiohttp.ClientSession | None) -> None:
        self.session = session
        self.owned = session is None


class Transport:
    """HTTP for one client: API calls with auth, limits and retries; bare uploads/downloads.

    ``max_json_bytes``, ``max_download_bytes`` and ``min_speed`` default to
    ``EMOCLIENT_MAX_JSON_MB``, ``EMOCLIENT_DOWNLOAD_MAX_MB`` and
    ``EMOCLIENT_DOWNLOAD_MIN_KBPS`` when those are set. ``timeout`` bounds each attempt at an
    API request; ``extra_headers`` go with every API request (never to other hosts).
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        workspace: str | None,
        timeout: float | Timeout,
        session: aiohttp.ClientSession | None,
        retry: RetryPolicy,
        extra_headers: Mapping[str, str] | None = None,
        sleep: Sleep = anyio.sleep,
        max_json_bytes: int | None = None,
        max_download_bytes: int | None = None,
        min_speed: float | None = None,
    ) -> None:
        switch_on_from_env()
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self._workspace = workspace
        self.timeout = as_timeout(timeout)
        self._shared = _SharedSession(session)
        self._is_copy = False
        self.retry = retry
        self._extra_headers = CIMultiDict(checked_headers(extra_headers))
        self._sleep = sleep
        #: Retries and rate-limit waits of this transport and its copies (shared).
        self.activity = ClientActivity()
        self.max_json_bytes = max_json_bytes or bytes_from_env(
            "EMOCLIENT_MAX_JSON_MB", DEFAULT_MAX_JSON_BYTES, unit=_MIB
        )
        self.max_download_bytes = max_download_bytes or bytes_from_env(
            "EMOCLIENT_DOWNLOAD_MAX_MB", DEFAULT_MAX_DOWNLOAD_BYTES, unit=_MIB
        )
        self.min_speed = min_speed or bytes_from_env(
            "EMOCLIENT_DOWNLOAD_MIN_KBPS", DEFAULT_MIN_SPEED, unit=_KIB
        )

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r})"

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use when the caller passed none."""
        shared = self._shared
        if shared.session is None:
            shared.session = aiohttp.ClientSession()
        return shared.session

    async def aclose(self) -> None:
        """Close the session if this transport created it; a caller's session stays open, and
        so does the session a copy shares with its original."""
        shared = self._shared
        if shared.owned and not self._is_copy and shared.session is not None:
            await shared.session.close()
            shared.session = None

    def with_options(
        self,
        *,
        timeout: Timeout | None = None,
        retry: RetryPolicy | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> Transport:
        """A copy with other defaults that shares this transport's session (and never closes
        it); ``extra_headers`` add to (and replace) this one's."""
        clone = copy.copy(self)
        clone._is_copy = True
        clone.timeout = self.timeout if timeout is None else timeout
        clone.retry = self.retry if retry is None else retry
        clone._extra_headers = CIMultiDict(self._extra_headers)
        clone._extra_headers.update(checked_headers(extra_headers))
        return clone

    def _api_headers(
        self, call: Mapping[str, str] | None, extra: Mapping[str, str]
    ) -> CIMultiDict[str]:
        # Later layers replace earlier ones whatever the case of the name; the key goes last,
        # so nothing replaces it (extra headers with Authorization are refused before this).
        headers = CIMultiDict({"Accept": "application/json"})
        if self._workspace:
            headers["X-DashScope-WorkSpace"] = self._workspace
        for layer in (call or {}, self._extra_headers, extra):
            headers.update(layer)
        headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        operation: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        json_body: Any,
        client_timeout: aiohttp.ClientTimeout,
    ) -> dict[str, Any]:
        logger.debug("%s %s (%s)", method, redact_url(url), operation)
        started = anyio.current_time()
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                params=params,
                json=json_body,
                timeout=client_timeout,
                allow_redirects=False,
            ) as resp:
                status, resp_headers, charset = resp.status, resp.headers, resp.charset
                limit = self.max_json_bytes if status < 400 else _ERROR_BYTES
                if status < 400 and (resp.content_length or 0) > limit:
                    raw, complete = b"", False  # refused unread
                else:
                    raw, complete = await _read_at_most(resp, limit)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("%s %s failed: %s", method, redact_url(url), type(exc).__name__)
            raise map_client_error(exc, method=method, url=url) from exc
        try:
            body = self._answer(status, raw, complete, charset, resp_headers, operation=operation)
        except APIStatusError as exc:
            _log_answer(method, url, status, started, exc.request_id)
            raise
        rid = request_id_of(body)
        _log_answer(method, url, status, started, rid)
        note_answer(status, resp_headers, rid)
        return body

    def _answer(
        self,
        status: int,
        raw: bytes,
        complete: bool,
        charset: str | None,
        headers: Mapping[str, str],
        *,
        operation: str,
    ) -> dict[str, Any]:
        """The JSON object of a success, or the error an error answer stands for.

        A proxy may echo the Authorization header in its page: the key is taken out of any
        answer text an error quotes, never out of a success's data (a signed URL of the
        service may hold the key's characters by chance).
        """
        if status >= 400:
            raw = raw.replace(self._api_key.encode(), b"<api key>")
            raise error_from_response(status, decode(raw, charset), headers, operation=operation)
        if 300 <= status < 400:
            # Not followed (the key would go along): a proxy, a moved endpoint or a loop.
            # Retrying cannot help, and the body is not the service's answer.
            where = redact_url(headers.get("Location", "")) or "nowhere"
            raise ConfigurationError(
                f"{operation} failed: the base URL {self.base_url} (base_url= or "
                f"DASHSCOPE_HTTP_BASE_URL) answered HTTP {status}, a redirect to {where}; "
                "emoclient does not follow redirects, so the API key never goes elsewhere. "
                f"Use the service's own URL, e.g. {DEFAULT_BASE_URL}."
            )
        rid = headers.get("X-Request-ID")
        parsed = functools.partial(
            json_object,
            complete=complete,
            limit=self.max_json_bytes,
            status=status,
            operation=operation,
            request_id=rid,
        )
        try:
            body: dict[str, Any] | None = parsed(raw)
        except APIStatusError:  # (InvalidResponse) it may quote the answer: not with the key
            if self._api_key.encode() not in raw:
                raise
            body = None
        if body is None:  # parsed again outside the handler: no __context__ holds the key
            body = parsed(raw.replace(self._api_key.encode(), b"<api key>"))
        if rid and request_id_of(body) is None:
            body["request_id"] = rid  # so that a parse error can name it too
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
        options: RequestOptions = NO_OPTIONS,
    ) -> dict[str, Any]:
        """One API read (or idempotent call), retried on 429/5xx/transport errors."""
        return await self._api(
            method,
            path,
            operation=operation,
            limiter=limiter,
            params=params,
            json_body=json_body,
            headers=headers,
            options=options,
            classify=read_retry,
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
        options: RequestOptions = NO_OPTIONS,
    ) -> dict[str, Any]:
        """POST a task; retried only when no task can have been created.

        A 429 or a refused connection is retried; a 5xx, a timeout, a dropped connection
        after sending or a garbled answer raises :class:`SubmitOutcomeUnknownError` instead.
        """
        return await self._api(
            "POST",
            path,
            operation=operation,
            limiter=limiter,
            params=None,
            json_body=json_body,
            headers=headers,
            options=options,
            classify=submit_retry(model),
        )

    async def _api(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        limiter: RateLimiter | None,
        params: Mapping[str, str] | None,
        json_body: Any,
        headers: Mapping[str, str] | None,
        options: RequestOptions,
        classify: Classifier,
    ) -> dict[str, Any]:
        url = f"{self.base_url}/{path.lstrip('/')}"
        all_headers = self._api_headers(headers, options.headers)
        timeout = _client_timeout(options.timeout or self.timeout)
        # Operations may quote an input URL, whose query string can be a signature.
        operation = scrub_urls(operation)

        async def send(attempt: int) -> dict[str, Any]:
            return await self._send_once(
                method,
                url,
                operation=operation,
                headers=all_headers,
                params=params,
                json_body=json_body,
                client_timeout=timeout,
            )

        return await self._request(
            send, operation=operation, limiter=limiter, classify=classify, kind=kind_of_path(path)
        )

    async def _request(
        self,
        send: Callable[[int], Awaitable[_T]],
        *,
        operation: str,
        limiter: RateLimiter | None,
        classify: Classifier,
        kind: str,
    ) -> _T:
        """The one retry loop: ``send(attempt)`` makes one attempt; ``classify`` says whether
        a failure may be sent again (and the server's Retry-After), or raises the error that
        replaces it."""
        attempts = self.retry.max_attempts
        attempt = 0
        while True:
            if limiter is not None:
                waited = await limiter.acquire()
                if waited > 0:
                    self.activity.waited(waited)
                    logger.debug("%s: waited %.3f s for the rate limit", operation, waited)
            try:
                return await send(attempt)
            except (APIStatusError, TransportError) as exc:
                retryable, retry_after = classify(exc)
                if not retryable or not self.retry.should_retry(attempt):
                    if retryable:
                        logger.warning(
                            "%s: giving up after %d attempts: %s", operation, attempt + 1, exc
                        )
                    raise
                delay = self.retry.delay(attempt, retry_after=retry_after)
                logger.info(
                    "%s: attempt %d of %d failed (%s); retrying in %.2f s",
                    operation,
                    attempt + 1,
                    attempts,
                    brief(exc),
                    delay,
                )
            self.activity.retried(kind)
            await self._sleep(delay)
            attempt += 1

    @asynccontextmanager
    async def stream(
        self, url: str, *, headers: Mapping[str, str] | None = None, read_timeout: float = 60.0
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET a result URL without credentials; the caller reads and checks the response."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=read_timeout)
        where = redact_url(url)
        logger.debug("GET %s %s", where, dict(headers) if headers else "(download)")
        try:
            async with self.session.get(url, headers=dict(headers or {}), timeout=timeout) as resp:
                rid = resp.headers.get("x-oss-request-id") or resp.headers.get("X-Request-ID")
                logger.debug(
                    "GET %s -> %d (%s bytes) [request_id=%s]",
                    where,
                    resp.status,
                    resp.content_length,
                    rid,
                )
                yield resp
        except (aiohttp.ClientConnectorError, TimeoutError) as exc:
            raise map_client_error(exc, method="GET", url=url) from exc

    async def post_form(
        self,
        url: str,
        form: Callable[[], AbstractAsyncContextManager[aiohttp.FormData]],
        *,
        operation: str,
        size: int,
    ) -> None:
        """POST a multipart form (temporary-storage upload) without credentials, retried
        like a read.

        ``form`` makes a fresh form for each attempt (a sent form cannot be sent again). A
        retry that finds its object already stored (409 ``FileAlreadyExists``) succeeded: an
        earlier attempt landed but its answer was lost. ``size`` bytes get at least
        ``min_speed`` bytes per second besides the usual timeout.
        """
        usual = self.timeout.total or 60.0
        # No read limit: the answer only starts once the whole file is sent.
        timeout = aiohttp.ClientTimeout(
            total=usual + size / self.min_speed, sock_connect=self.timeout.connect
        )

        async def send(attempt: int) -> None:
            try:
                async with form() as data:
                    await self._post_once(url, data, operation=operation, client_timeout=timeout)
            except APIStatusError as exc:
                if attempt == 0 or exc.status != 409 or exc.code not in _ALREADY_STORED:
                    raise
                logger.info(
                    "%s: already stored (HTTP 409 %s), so an earlier attempt landed",
                    operation,
                    exc.code,
                )

        await self._request(
            send, operation=operation, limiter=None, classify=read_retry, kind="upload"
        )

    async def _post_once(
        self,
        url: str,
        data: aiohttp.FormData,
        *,
        operation: str,
        client_timeout: aiohttp.ClientTimeout,
    ) -> None:
        where = redact_url(url)
        logger.debug("POST %s (%s)", where, operation)
        try:
            async with self.session.post(
                url, data=data, timeout=client_timeout, allow_redirects=False
            ) as resp:
                status, resp_headers, charset = resp.status, resp.headers, resp.charset
                raw, _ = await _read_at_most(resp, _ERROR_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.debug("POST %s failed: %s", where, type(exc).__name__)
            raise map_client_error(exc, method="POST", url=url) from exc
        rid = resp_headers.get("x-oss-request-id")
        logger.debug("POST %s -> %d [request_id=%s]", where, status, rid)
        if status >= 300:
            raise error_from_response(
                status, decode(raw, charset), resp_headers, operation=operation
            )


def _log_answer(method: str, url: str, status: int, started: float, rid: str | None) -> None:
    elapsed = anyio.current_time() - started
    logger.debug(
        "%s %s -> %d in %.3f s [request_id=%s]", method, redact_url(url), status, elapsed, rid
    )
