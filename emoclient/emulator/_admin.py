"""The emulator's own routes under ``/_emulator``: stats, clock, faults, reset, file hosting."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ._errors import json_response
from ._faults import updated_faults
from ._keys import STATE
from ._stats import stats_document


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is a loopback address (admin routes answer only to those)."""
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _admin_error(status: int, message: str) -> web.Response:
    return json_response({"code": "EmulatorAdmin", "message": message}, status=status)


@web.middleware
async def loopback_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuse admin routes to any peer that is not on this machine."""
    if request.path.startswith("/_emulator") and not is_loopback(request.remote):
        return _admin_error(
            403,
            f"The emulator's admin routes answer only to loopback callers, not {request.remote}; "
            "call them from the emulator's own host.",
        )
    result: web.StreamResponse = await handler(request)
    return result


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read() or b"{}")
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="Send a JSON object as the request body.")
    return body


async def stats(request: web.Request) -> web.Response:
    """``GET /_emulator/stats``."""
    return json_response(stats_document(request.app[STATE]))


#: The largest clock step or speed accepted: about 32 years of virtual seconds. A larger
#: one would carry the clock past the dates Python and the wire formats can write.
MAX_CLOCK_NUMBER = 1e9


async def _non_negative(request: web.Request, name: str) -> float | None:
    """The number ``name`` of the JSON body if it is in 0..MAX_CLOCK_NUMBER, else None."""
    value = (await _json_object(request)).get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    # Python's JSON accepts NaN and Infinity; either would break the clock for good.
    return float(value) if 0 <= value <= MAX_CLOCK_NUMBER else None


async def advance_clock(request: web.Request) -> web.Response:
    """``POST /_emulator/clock/advance {"seconds": N}``."""
    seconds = await _non_negative(request, "seconds")
    if seconds is None:
        return _admin_error(
            400, 'Send {"seconds": N} with a number 0 <= N <= 1e9 of virtual seconds.'
        )
    state = request.app[STATE]
    state.advance_clock(seconds)
    return json_response({"virtual_time": state.now()})


async def set_speed(request: web.Request) -> web.Response:
    """``POST /_emulator/clock/speed {"speed": F}``: virtual seconds per real second from now."""
    speed = await _non_negative(request, "speed")
    if speed is None:
        return _admin_error(
            400, 'Send {"speed": F} with a number 0 <= F <= 1e9 (0 freezes the clock).'
        )
    state = request.app[STATE]
    state.set_speed(speed)
    return json_response({"virtual_time": state.now(), "speed": state.clock.speed})


async def set_faults(request: web.Request) -> web.Response:
    """``POST /_emulator/faults {...}``: change some fault settings, keep the others."""
    state = request.app[STATE]
    try:
        state.set_faults(updated_faults(state.faults, await _json_object(request)))
    except ValidationError as exc:
        return _admin_error(400, f"Invalid fault settings: {exc.errors(include_url=False)}")
    return json_response(state.faults.model_dump())


async def reset(request: web.Request) -> web.Response:
    """``POST /_emulator/reset``: forget every account, task and upload."""
    request.app[STATE].reset()
    return json_response({"reset": True})


async def host_file(request: web.Request) -> web.Response:
    """``PUT /_emulator/files/{name}``: serve the body at a public http URL (for tests)."""
    state = request.app[STATE]
    name = request.match_info["name"]
    state.public_files[name] = await request.read()
    return json_response({"url": state.public_url(name, str(request.url.origin()))})


def add_admin_routes(app: web.Application) -> None:
    """Register the admin routes on ``app``."""
    app.router.add_get("/_emulator/stats", stats, name="admin_stats")
    app.router.add_post("/_emulator/clock/advance", advance_clock, name="admin_clock")
    app.router.add_post("/_emulator/clock/speed", set_speed, name="admin_speed")
    app.router.add_post("/_emulator/faults", set_faults, name="admin_faults")
    app.router.add_post("/_emulator/reset", reset, name="admin_reset")
    app.router.add_put("/_emulator/files/{name}", host_file, name="admin_files")
