"""Keys under which the aiohttp applications and requests carry the emulator's objects."""

from __future__ import annotations

from aiohttp import web

from ._core import EmulatorState
from ._state import Account

STATE = web.AppKey("emulator_state", EmulatorState)
#: The authenticated account of a service request (a request key, set by the middleware).
ACCOUNT = web.RequestKey("emulator_account", Account)
#: The ``key_label`` of the request's API key (a request key, set by the middleware).
KEY_ID = web.RequestKey("emulator_key_id", str)


def account_of(request: web.Request) -> Account:
    """The account the middleware authenticated for ``request``."""
    return request[ACCOUNT]
