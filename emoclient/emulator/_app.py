"""The aiohttp application of the service API (``/api/v1``) and its middleware."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from aiohttp import web

from . import _errors as err
from ._accounts import key_label
from ._admin import add_admin_routes, loopback_only
from ._api import detect, submit
from ._api_tasks import cancel_task, get_task, list_tasks
from ._config import EmulatorConfig
from ._core import EmulatorState
from ._driver import Driver
from ._errors import ApiError
from ._faults import drop_connection, garbled, injected_error, should_drop, should_drop_after
from ._files import create_files_app
from ._keys import ACCOUNT, KEY_ID, STATE
from ._model_names import DETECT_MODELS, SYNTHESIS_MODELS
from ._state import Account
from ._uploads_api import upload_policy

API = "/api/v1"
#: The models each model route serves (upload policies are asked for any model).
ROUTE_MODELS = {"detect": DETECT_MODELS, "submit": SYNTHESIS_MODELS}


def authenticate(request: web.Request, state: EmulatorState) -> tuple[Account, str]:
    """The account and key label of the ``Authorization: Bearer`` key, or 401 InvalidApiKey."""
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError.of(err.INVALID_API_KEY)
    label = state.config.account_of(key)
    if label is None:
        raise ApiError.of(err.INVALID_API_KEY)
    return state.account(label), key_label(key)


async def request_model(request: web.Request, route: str) -> str | None:
    """The model a request to a model route names, if it names a known one.

    The service limits each model apart, so the limits need the model before the handler
    runs; aiohttp keeps the body it read for the handler.
    """
    if route == "upload_policy":
        return request.query.get("model") or None
    known = ROUTE_MODELS.get(route)
    if known is None:
        return None
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return model if model in known else None


@web.middleware
async def service_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Auth, statistics, faults and rate limits in front of every service route."""
    route = request.match_info.route.name
    if route is not None and route.startswith("admin"):
        result: web.StreamResponse = await handler(request)
        return result
    try:
        if route is None:  # no such path or method: aiohttp's 404 or 405, as an API answer
            result = await handler(request)
            return result
        return await _serve(request, handler, request.app[STATE], route)
    except ApiError as exc:
        return exc.response()
    except web.HTTPException as exc:
        # aiohttp's own refusals (unknown path, wrong method, body over the size limit)
        # answer in the service's JSON envelope like every other error.
        if exc.status < 400 or not request.path.startswith(API):
            raise
        response = ApiError.of(err.http_error(exc.status)).response()
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


async def _serve(
    request: web.Request, handler: Any, state: EmulatorState, route: str
) -> web.StreamResponse:
    account, request[KEY_ID] = authenticate(request, state)
    request[ACCOUNT] = account
    model = await request_model(request, route)
    counters = state.count(account, route, model)
    faults = state.faults
    if faults.latency > 0:
        await anyio.sleep(faults.latency)
    if should_drop(faults, route, state.rng):
        return drop_connection(request)
    limiter = state.limiter(account, route, model)
    if limiter is not None and not limiter.try_acquire(time.monotonic()):
        for counter in counters:
            counter.throttled += 1
        raise ApiError.of(err.THROTTLED)
    failure = injected_error(faults, route, state.rng)
    if failure is not None:
        raise ApiError.of(failure)
    state.sync()
    response: web.StreamResponse = await handler(request)
    if should_drop_after(faults, route, state.rng):
        return drop_connection(request)
    return await garbled(faults, route, request, response)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    async with anyio.create_task_group() as tg:
        tg.start_soon(Driver(state).run)
        yield
        tg.cancel_scope.cancel()
    await state.fetcher.close()
    state.close()


def create_app(config: EmulatorConfig | None = None) -> web.Application:
    """The emulator's API application; serve it with ``serve()`` or ``web.run_app``.

    Without ``serve()`` the fake OSS and result host is mounted under ``/_oss`` of the
    same application; ``serve()`` puts it on a second listener instead.
    """
    state = EmulatorState(config or EmulatorConfig())
    app = web.Application(middlewares=[loopback_only, service_middleware])
    app[STATE] = state
    router = app.router
    images = f"{API}/services/aigc/image2video"
    # Every API path also answers with a trailing slash: the official SDK's asyncio
    # client joins its URLs that way (GET .../tasks/{id}/), and older docs write them so.
    slash = "{slash:/?}"
    router.add_post(f"{images}/face-detect{slash}", detect, name="detect")
    router.add_post(f"{images}/video-synthesis{slash}", submit, name="submit")
    router.add_get(f"{API}/tasks{slash}", list_tasks, name="task_list")
    router.add_get(f"{API}/tasks/{{task_id}}{slash}", get_task, name="task_get")
    router.add_post(f"{API}/tasks/{{task_id}}/cancel{slash}", cancel_task, name="task_cancel")
    router.add_get(f"{API}/uploads{slash}", upload_policy, name="upload_policy")
    add_admin_routes(app)
    app.add_subapp("/_oss", create_files_app(state))
    app.cleanup_ctx.append(_lifecycle)
    return app
