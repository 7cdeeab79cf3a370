"""Starting worker processes from a test and talking to them; the limits the tests check;
the jobs and keys the tests make.

``async with Workers(tmp_path) as workers:`` starts real OS processes (``worker.py``) with
the test's environment (so the session's ``EMOCLIENT_HOME``, whose SQLite file is the
default store): the emulator (``await workers.emulator(**config)``, a
:class:`RemoteEmulator`) and the workers (``await workers.start(*configs)``). Every read
has a deadline; at the end the emulator is asked to quit and every process still alive is
killed. A worker's stderr goes to a log file whose end is quoted when it misbehaves.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp
import anyio
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from emoclient import SQLiteStore
from emoclient._store import default_store_path
from emoclient.emulator.samples import make_portrait, make_speech

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"

#: How long a worker may take to start (imports, store) on a loaded 2-core machine.
START_DEADLINE = 30.0
#: How long one worker's part may take before the test fails instead of hanging.
WORK_DEADLINE = 45.0

#: The service's limits per account (API.md 3.1), per route and model.
MODEL_LIMITS: dict[tuple[str, str], int] = {
    ("submit", "emo-v1"): 5,
    ("submit", "emoji-v1"): 1,
    ("detect", "emo-detect-v1"): 5,
    ("detect", "emoji-detect-v1"): 1,
    ("upload_policy", "emo-v1"): 100,
    ("upload_policy", "emoji-v1"): 100,
    ("upload_policy", "emo-detect-v1"): 100,
    ("upload_policy", "emoji-detect-v1"): 100,
}
#: Task queries (get, list, cancel) are the account's, whatever the model.
QUERY_LIMIT = 20
QUERY_ROUTES = ("task_get", "task_list", "task_cancel")


class Worker:
    """One worker process: JSON lines out, commands in."""

    def __init__(self, process: Process, name: str, log: Path) -> None:
        self.process = process
        self.name = name
        self.log = log
        self.graceful = False  # asked to quit before it is killed
        assert process.stdout is not None
        self._out = BufferedByteReceiveStream(process.stdout)

    def log_tail(self) -> str:
        """The end of the worker's stderr, for failure messages."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return text[-3000:] or "(empty log)"

    async def read(self, *, deadline: float = WORK_DEADLINE) -> Any:
        """The next JSON line; fails when the worker ends or says nothing in time."""
        try:
            with anyio.fail_after(deadline):
                line = await self._out.receive_until(b"\n", 1 << 22)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            code = await self.process.wait()
            raise AssertionError(
                f"worker {self.name} ended early (exit {code}); its stderr:\n{self.log_tail()}"
            ) from None
        except TimeoutError:
            raise AssertionError(
                f"worker {self.name} said nothing for {deadline} s; its stderr:\n{self.log_tail()}"
            ) from None
        return json.loads(line)

    async def send(self, line: str) -> None:
        """One line on the worker's stdin."""
        assert self.process.stdin is not None
        await self.process.stdin.send(line.encode() + b"\n")

    async def until_end(self, *, deadline: float = WORK_DEADLINE) -> tuple[list[Any], Any]:
        """Every line up to ``{"end": ...}``, and the end's value, within ``deadline``."""
        lines: list[Any] = []
        with anyio.fail_after(deadline):
            while True:
                line = await self.read()
                if isinstance(line, dict) and "end" in line:
                    return lines, line["end"]
                lines.append(line)

    async def kill(self) -> None:
        """SIGKILL, and wait until it is gone."""
        if self.process.returncode is None:
            self.process.kill()
        with anyio.fail_after(10):
            await self.process.wait()


class RemoteEmulator:
    """The emulator served by a worker process, driven through its admin routes.

    The tests' emulator runs in a process of its own: in the test's process, a pause of
    that process (its garbage collector pauses for tens of milliseconds once the whole
    suite is loaded) would delay the timestamps by which the emulator counts requests per
    second, and show the workers' evenly spaced requests bunched.
    """

    def __init__(self, worker: Worker, base_url: str, root_url: str) -> None:
        self.worker = worker
        self.base_url = base_url
        self.root_url = root_url

    async def _admin(self, method: str, path: str, body: Mapping[str, Any] | None) -> Any:
        timeout = aiohttp.ClientTimeout(total=10)
        with anyio.fail_after(15):
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(method, f"{self.root_url}/_emulator/{path}", json=body) as response,
            ):
                assert response.status == 200, await response.text()
                return await response.json()

    async def stats(self) -> dict[str, Any]:
        """The statistics document (``GET /_emulator/stats``)."""
        document: dict[str, Any] = await self._admin("GET", "stats", None)
        return document

    async def set_faults(self, **changes: Any) -> None:
        """Change fault settings; unnamed settings keep their values."""
        await self._admin("POST", "faults", changes)

    async def set_speed(self, speed: float) -> None:
        """Virtual seconds per real second from now on (0 freezes the clock)."""
        await self._admin("POST", "clock/speed", {"speed": speed})


class Workers:
    """The worker processes of one test (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[Worker] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        with anyio.CancelScope(shield=True):
            for worker in self.started:
                if worker.graceful and worker.process.returncode is None:
                    # The emulator removes its temporary files when it stops.
                    with anyio.move_on_after(10):
                        await worker.send("quit")
                        await worker.process.wait()
                await worker.kill()
                await worker.process.aclose()

    async def spawn(self, config: Mapping[str, Any]) -> Worker:
        """Start one worker (it has not said "ready" yet)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(TESTS), env.get("PYTHONPATH")])
        )
        name = f"w{len(self.started)}-{config['mode']}"
        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / f"{name}.log"
        with log.open("wb") as stderr:
            process = await anyio.open_process(
                [sys.executable, "-m", "account_workers.worker", json.dumps(dict(config))],
                env=env,
                stderr=stderr,
            )
        worker = Worker(process, name, log)
        self.started.append(worker)
        return worker

    async def emulator(self, **config: Any) -> RemoteEmulator:
        """An emulator in a process of its own: ``EmulatorConfig.fast(**config)``."""
        worker = await self.spawn({"mode": "emulator", "emulator": config})
        worker.graceful = True
        urls = await worker.read(deadline=START_DEADLINE)
        return RemoteEmulator(worker, urls["base_url"], urls["root_url"])

    async def start(self, *configs: Mapping[str, Any]) -> list[Worker]:
        """Start one worker per config and release them together once every one is ready."""
        await create_default_store()
        workers = [await self.spawn(config) for config in configs]
        for worker in workers:
            assert await worker.read(deadline=START_DEADLINE) == "ready"
        for worker in workers:
            await worker.send("go")
        return workers


async def create_default_store() -> None:
    """Create the default store's file (under ``EMOCLIENT_HOME``) before workers start.

    Processes that create a new store file at the same moment may fail (a library bug, shown
    by ``test_processes_creating_one_store_at_once_all_open_it``); the other tests are not
    about that, so their workers find the file made.
    """
    async with SQLiteStore(default_store_path()) as store:
        await store.lease_count("warm-up")


def worker_config(
    mode: str,
    base_url: str,
    keys: list[str] | list[tuple[str, str]],
    *,
    store: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A worker's JSON config: ``keys`` are keys, or (key, account) pairs."""
    clients = [
        {"key": k, "account": None} if isinstance(k, str) else {"key": k[0], "account": k[1]}
        for k in keys
    ]
    return {"mode": mode, "base_url": base_url, "clients": clients, "store": store, **fields}


def throttled(account: Mapping[str, Any]) -> dict[str, int]:
    """Every route's throttled count, the account's and each model's, by ``[model:]route``."""
    counts = {name: int(r["throttled"]) for name, r in account["routes"].items()}
    for model, usage in account["models"].items():
        for name, r in usage["routes"].items():
            counts[f"{model}:{name}"] = int(r["throttled"])
    return counts


def over_limits(account: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Routes whose busiest second held more requests than the account may send:
    ``{"[model:]route": (max_in_1s, limit)}`` (empty when within every limit)."""
    over: dict[str, tuple[int, int]] = {}
    for name in QUERY_ROUTES:
        peak = int(account["routes"].get(name, {}).get("max_in_1s", 0))
        if peak > QUERY_LIMIT:
            over[name] = (peak, QUERY_LIMIT)
    for model, usage in account["models"].items():
        for name, r in usage["routes"].items():
            limit = MODEL_LIMITS.get((name, model))
            if limit is not None and int(r["max_in_1s"]) > limit:
                over[f"{model}:{name}"] = (int(r["max_in_1s"]), limit)
    return over


def assert_inside_the_limits(account: Mapping[str, Any]) -> None:
    """No answer was a 429 and no second held more requests than the limits allow."""
    assert throttled(account) == dict.fromkeys(throttled(account), 0), throttled(account)
    assert over_limits(account) == {}


def new_key() -> str:
    """A key no earlier test or run used: its account starts with a clean store entry."""
    return f"sk-account-{uuid.uuid4().hex[:12]}"


def emo_job(folder: Path, n: int, *, seconds: float = 1.0) -> dict[str, str]:
    """An EMO job of its own portrait and its own speech (``seconds`` long)."""
    folder.mkdir(parents=True, exist_ok=True)
    image = make_portrait(folder / f"p{n}.png", width=480, height=640, seed=n)
    audio = make_speech(folder / f"s{n}.wav", seconds=seconds, seed=n)
    return {
        "kind": "emo",
        "image": str(image),
        "audio": str(audio),
        "output": f"emo-{n}.mp4",
        "label": f"emo {n}",
    }


def emoji_job(folder: Path, n: int) -> dict[str, str]:
    """An Emoji job of its own portrait."""
    folder.mkdir(parents=True, exist_ok=True)
    image = make_portrait(folder / f"q{n}.png", width=480, height=640, seed=100 + n)
    return {
        "kind": "emoji",
        "image": str(image),
        "driven_id": "mengwa_kaixin",
        "output": f"emoji-{n}.mp4",
        "label": f"emoji {n}",
    }


async def results_of(worker: Worker) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A batch worker's results and events, once it ended."""
    lines, _ = await worker.until_end()
    results = [line["result"] for line in lines if "result" in line]
    events = [line for line in lines if "event" in line]
    return results, events


def video_seconds(path: Path) -> float:
    """The length of an MP4's video stream, from its frames (PyAV)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate
        assert rate is not None
        return float(frames / rate)
