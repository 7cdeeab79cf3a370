"""A local emulator of the DashScope EMO/Emoji service, faithful on the wire.

Start it in a test or a script with ``async with serve(config) as emulator:`` and point a
client (or the official SDK) at ``emulator.base_url``; from a shell, ``emoclient emulator``.
"""

from ._accounts import account_label
from ._app import create_app
from ._clock import VirtualClock
from ._config import EmulatorConfig, ErrorSpec, Faults
from ._server import RunningEmulator, serve

__all__ = [
    "EmulatorConfig",
    "ErrorSpec",
    "Faults",
    "RunningEmulator",
    "VirtualClock",
    "account_label",
    "create_app",
    "serve",
]
