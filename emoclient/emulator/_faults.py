"""Fault injection: which request errors, drops or waits, decided by the seeded generator."""

from __future__ import annotations

import random
from typing import Any

from aiohttp import web

from . import _errors as err
from ._config import ErrorSpec, Faults


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
