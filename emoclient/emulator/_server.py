"""``serve()``: run the emulator on two loopback listeners inside an ``async with``."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ._app import create_app
from ._config import EmulatorConfig
from ._core import EmulatorState
from ._faults import updated_faults
from ._files import create_files_app
from ._keys import STATE
from ._stats import stats_document


@dataclass
class RunningEmulator:
    """A running emulator: its URLs and direct handles on its clock, faults and stats."""

    base_url: str
    """The API base URL (the value for ``DASHSCOPE_HTTP_BASE_URL``)."""
    root_url: str
    """The API listener's root, e.g. ``http://127.0.0.1:PORT``."""
    files_url: str
    """The second listener: the fake OSS upload host and the result host."""
    config: EmulatorConfig
    state: EmulatorState

    async def stats(self) -> dict[str, Any]:
        """The statistics document (the same JSON as ``GET /_emulator/stats``)."""
        return stats_document(self.state)

    def advance(self, seconds: float) -> None:
        """Advance the virtual clock by ``seconds``; everything due happens at once."""
        self.state.advance_clock(seconds)

    def set_speed(self, speed: float) -> None:
        """Run the virtual clock at ``speed`` virtual seconds per real second (0 freezes it)."""
        self.state.set_speed(speed)

    def set_faults(self, **changes: Any) -> None:
        """Change fault settings (see ``Faults``); unnamed settings keep their values."""
        self.state.set_faults(updated_faults(self.state.faults, changes))
        self.state.wake()

    def host_file(self, name: str, data: bytes) -> str:
        """Serve ``data`` at a public http URL on the files listener and return the URL."""
        self.state.public_files[name] = data
        return f"{self.files_url}/public/{name}"

    async def wait_rendered(self, task_id: str) -> None:
        """Wait until the task's MP4 is rendered (returns at once if no render is under way).

        With ``render=True`` a task ends at the later of its virtual processing time and the
        end of its (real-time) rendering; tests on a frozen clock await this first.
        """
        await self.state.wait_rendered(task_id)

    def now(self) -> float:
        """The virtual clock's current time (epoch seconds)."""
        return self.state.now()


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def _start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    # Bind first: a runner that was set up (its driver task group entered in the caller's
    # task) must always be cleaned up, or the caller's cancel scopes are left corrupted.
    sock = _bound_socket(host, port)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    return runner, sock.getsockname()[1]


#: A wildcard listener is advertised under this machine's loopback address.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def _url(host: str, port: int) -> str:
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@asynccontextmanager
async def serve(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    files_port: int = 0,
) -> AsyncIterator[RunningEmulator]:
    """Run the emulator until the ``async with`` block ends.

    The API answers on ``host:port`` (0 picks a free port); the fake OSS upload host and
    the result host answer on a second listener (``files_port``), so that they are a
    different origin from the API, as on the real service.
    """
    app = create_app(config)
    state = app[STATE]
    api_runner, api_port = await _start(app, host, port)
    try:
        files_runner, bound_files_port = await _start(create_files_app(state), host, files_port)
    except BaseException:
        await api_runner.cleanup()
        raise
    root = _url(host, api_port)
    state.files_url = _url(host, bound_files_port)
    try:
        yield RunningEmulator(
            base_url=f"{root}/api/v1",
            root_url=root,
            files_url=state.files_url,
            config=state.config,
            state=state,
        )
    finally:
        await files_runner.cleanup()
        await api_runner.cleanup()
