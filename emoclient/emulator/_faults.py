"""Fault injection: which request errors, drops or waits, decided by the seeded generator;
and the malformed answers and result bodies a misbehaving service or proxy would send."""

from __future__ import annotations

import json
import random
from typing import Any

import anyio
from aiohttp import web

from . import _errors as err
from ._config import DownloadFault, ErrorSpec, Faults, MalformedKind

_PROXY_PAGE = "<html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>"
_HUGE_BYTES = 8 * 1024 * 1024
_BLOCK = 64 * 1024
#: An endless body ends anyway after this much, so that a client that reads it all fails
#: instead of hanging.
_ENDLESS_CAP = 1024**3


def injected_error(faults: Faults, route: str, rng: random.Random) -> ErrorSpec | None:
    """500 InternalError or 503 ModelUnavailable, with ``route``'s error probability."""
    rate = faults.rate_for("error_rate", route)
    if rate <= 0 or rng.random() >= rate:
        return None
    return err.INTERNAL if rng.random() < 0.5 else err.UNAVAILABLE


def should_drop(faults: Faults, route: str, rng: random.Random) -> bool:
    """Whether to close ``route``'s connection without answering."""
    rate = faults.rate_for("drop_rate", route)
    return rate > 0 and rng.random() < rate


def should_drop_after(faults: Faults, route: str, rng: random.Random) -> bool:
    """Whether to close the connection after the request took effect (answer lost)."""
    rate = faults.rate_for("drop_after_rate", route)
    return rate > 0 and rng.random() < rate


def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection under ``request`` and hand aiohttp a response it cannot send."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.StreamResponse(status=200)


def updated_faults(current: Faults, changes: dict[str, Any]) -> Faults:
    """``current`` with ``changes`` applied, validated (raises pydantic's ValidationError)."""
    return Faults.model_validate({**current.model_dump(), **changes})


async def garbled(
    faults: Faults, route: str, request: web.Request, response: web.StreamResponse
) -> web.StreamResponse:
    """``response``, or the malformed answer ``faults.malformed`` sets for ``route``."""
    kind = faults.malformed.get(route)
    if kind is None or response.status != 200 or not isinstance(response, web.Response):
        return response
    return await _malformed(kind, request, response)


async def _malformed(
    kind: MalformedKind, request: web.Request, real: web.Response
) -> web.StreamResponse:
    headers = {"X-Request-ID": real.headers.get("X-Request-ID") or err.new_request_id()}
    if kind == "empty":
        return web.Response(status=200, headers=headers, content_type="application/json")
    if kind == "html":
        return web.Response(text=_PROXY_PAGE, content_type="text/html", headers=headers)
    if kind == "endless":
        return await _endless(request, b'{"padding": "', b"x", headers, "application/json")
    if kind == "array":
        body: Any = []
    elif kind == "empty_object":
        body = {}
    elif kind == "huge":
        body = {"request_id": headers["X-Request-ID"], "padding": "x" * _HUGE_BYTES}
    else:
        body = _retyped(json.loads(real.body if isinstance(real.body, bytes) else b"{}"))
    return web.Response(
        body=json.dumps(body).encode(), content_type="application/json", headers=headers
    )


def _retyped(value: Any) -> Any:
    """``value`` with every leaf of another JSON type (and lists turned into objects)."""
    if isinstance(value, dict):
        return {key: _retyped(item) for key, item in value.items()}
    if isinstance(value, list):
        return {"items": [_retyped(item) for item in value]}
    if isinstance(value, bool) or value is None:
        return "yes"
    if isinstance(value, str):
        return len(value)
    return str(value)


async def bad_download(
    kind: DownloadFault, request: web.Request, data: bytes
) -> web.StreamResponse:
    """A result download that misbehaves as ``kind`` says (see ``Faults.download_fault``)."""
    if kind == "html":
        return web.Response(text=_PROXY_PAGE, content_type="text/html")
    if kind == "endless":
        return await _endless(request, data, data, {}, "video/mp4")
    if kind == "longer":
        # Written raw, in one piece: aiohttp's writer would cut the body at Content-Length.
        head = (
            "HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nConnection: close\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        transport = request.transport
        if transport is not None:
            transport.write(head.encode() + data + b"EXTRA BYTES BEYOND CONTENT-LENGTH" * 32)
            transport.close()
        return web.StreamResponse(status=200)
    response = web.StreamResponse(status=200, headers={"Content-Type": "video/mp4"})
    response.content_length = len(data)
    await response.prepare(request)
    await response.write(data[: len(data) // 2])
    await _until_closed(request)
    return response


async def _endless(
    request: web.Request, start: bytes, fill: bytes, headers: dict[str, str], content_type: str
) -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={**headers, "Content-Type": content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent, block = 0, (fill * (_BLOCK // max(1, len(fill)) + 1))[:_BLOCK]
    try:
        await response.write(start)
        while sent < _ENDLESS_CAP:
            await response.write(block)
            sent += len(block)
    except ConnectionError:  # the client went away: what it should do
        pass
    return response


async def _until_closed(request: web.Request, *, at_most: float = 600.0) -> None:
    # aiohttp neither cancels a handler nor sets an event when its client leaves: poll.
    transport = request.transport
    with anyio.move_on_after(at_most):
        while transport is not None and not transport.is_closing():  # noqa: ASYNC110
            await anyio.sleep(0.05)
