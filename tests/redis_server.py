"""A real ``redis-server`` for the Redis store's tests (not a test module).

A test module loads this module as a plugin, which makes its fixtures global, so the whole
session shares one server (importing the fixtures instead would start one per module)::

    pytest_plugins = ["redis_server"]

    async def test_something(redis_url: str) -> None: ...

``redis_server`` (session) is a :class:`RedisServer` on 127.0.0.1 with a free port and no
persistence, which a test may :meth:`~RedisServer.stop` and :meth:`~RedisServer.start` again
on the same port; ``redis_url`` is its URL, running. Without ``redis-server`` on PATH the
tests are skipped, except under CI (``CI`` set), where they fail: run
``scripts/ensure-redis.sh`` to install it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_STARTUP = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ping(port: int) -> bool:
    """Whether a Redis on ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; restartable on the same port."""

    def __init__(self, executable: str, directory: Path) -> None:
        self.executable = executable
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers PING."""
        if self.running:
            return
        log = (self.directory / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.executable,
                *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + _STARTUP
        while not ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server did not start on port {self.port}; see "
                    f"{self.directory / 'redis.log'}"
                )
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (its data is gone: it keeps none on disk)."""
        if self._process is not None:
            process, self._process = self._process, None
            process.kill()
            process.wait()


@pytest.fixture(scope="session", name="redis_server")
def redis_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A running ``redis-server`` shared by the session (see the module docstring)."""
    executable = shutil.which("redis-server")
    if executable is None:
        message = "redis-server is not installed; run scripts/ensure-redis.sh"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must not skip the Redis tests)", pytrace=False)
        pytest.skip(message)
    server = RedisServer(executable, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="redis_url")
def redis_url_fixture(redis_server: RedisServer) -> str:
    """The URL of the session's Redis, started again if an earlier test left it stopped."""
    redis_server.start()
    return redis_server.url
