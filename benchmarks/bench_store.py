"""The account store's backends: what a call costs, and how precisely a limiter holds a rate.

Part 1, cost per call of each backend (``MemoryStore``, ``SQLiteStore`` on a file in a temp
folder, ``RedisStore`` on a ``redis-server`` this script starts on 127.0.0.1): median and
p90 microseconds of a ``try_acquire`` that grants (a fresh key per call) and of a lease round
trip (``try_lease`` then ``release_lease``), timed one call at a time on one event loop;
medians over ``--rounds`` rounds of ``--calls`` calls.

Part 2, limiter precision: for limits of 5/s and 20/s, callers hammer one limiter for
``--seconds``. Arms: emoclient's ``RateLimiter`` over each backend, with headroom 0 and the
default 3 % (``MemoryStore``: 1 process; SQLite and Redis: ``--processes`` spawned processes
sharing the store), and aiolimiter's two usual settings in 1 process, ``AsyncLimiter(rate, 1)``
(a burst of ``rate``) and ``AsyncLimiter(1, 1 / rate)`` (one at a time). Each process runs
``--coroutines`` callers. Every grant is recorded twice: on the store's clock at the decision
(``try_acquire_at``) and on ``time.time()`` in the caller right after ``acquire`` returned
(aiolimiter has only the latter). Printed per arm, from one run:

- ``granted``: grants in the run;
- ``rate/limit``: (grants - 1) / (last - first grant time), over the limit;
- ``min gap``: the shortest time between two consecutive grants, in ms;
- ``max`` and ``over``: the most grants in any sliding window [t, t + 1 s), computed exactly
  from the sorted grant times, and how many windows starting at a grant held more than the
  limit; once on the store's clock (``store``), once on the callers' clock (``local``).

The target: at most ``limit`` grants in any sliding second, never more, and a rate of at least
97 % of the limit.

    python benchmarks/bench_store.py            # about 2 minutes on 2 cores
    python benchmarks/bench_store.py --quick    # limit 5 only: about 30 s
    python benchmarks/bench_store.py --json results.json   # also the results as JSON

Without ``redis-server`` on PATH the Redis arms are left out and the results say so.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import multiprocessing
import os
import platform
import queue
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.to_thread
import benchjson
from aiolimiter import AsyncLimiter

from emoclient import MemoryStore, RateLimiter, Rates, RedisStore, SQLiteStore

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

    from emoclient import AccountStore

Store = MemoryStore | SQLiteStore | RedisStore

LIMITS = (5, 20)
DEFAULT_HEADROOM = Rates().headroom


# --- redis-server on a free port (as tests/redis_server.py starts it) ---


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(directory: Path) -> Iterator[str | None]:
    """A ``redis-server`` without persistence on 127.0.0.1; yields its URL, stops it after.

    Yields None when ``redis-server`` is not installed (scripts/ensure-redis.sh installs it).
    """
    executable = shutil.which("redis-server")
    if executable is None:
        yield None
        return
    port = _free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
    args += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
    with (directory / "redis.log").open("ab") as log:
        process = subprocess.Popen([executable, *args], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10.0
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start; see {directory / 'redis.log'}")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait()


def _open(backend: str, target: str) -> Store:
    if backend == "memory":
        return MemoryStore()
    if backend == "sqlite":
        return SQLiteStore(target)
    return RedisStore(target)


# --- part 1: cost per call ---


@dataclass
class Cost:
    acquire: list[tuple[float, float]] = field(default_factory=list)  # (p50, p90) per round
    lease: list[tuple[float, float]] = field(default_factory=list)


def _p50_p90(samples_ns: list[int]) -> tuple[float, float]:
    deciles = statistics.quantiles(samples_ns, n=10)
    return statistics.median(samples_ns) / 1000, deciles[8] / 1000


async def _timed(names: list[str], call: Callable[[str], Awaitable[object]]) -> tuple[float, float]:
    samples = []
    for name in names:
        started = time.perf_counter_ns()
        await call(name)
        samples.append(time.perf_counter_ns() - started)
    return _p50_p90(samples)


async def _cost_round(store: AccountStore, calls: int, cost: Cost) -> None:
    prefix = f"bench:{uuid.uuid4().hex[:8]}"
    window = f"{prefix}:window"

    async def acquire(key: str) -> None:
        if await store.try_acquire(key, interval=0.001) != 0.0:
            raise RuntimeError("a fresh rate key was refused; the cost would not be a grant's")

    async def lease(holder: str) -> None:
        if not await store.try_lease(window, size=2, holder=holder, ttl=30.0):
            raise RuntimeError("an empty lease window refused a slot")
        await store.release_lease(window, holder=holder)

    # Warm-up: connection, scripts, caches. A fresh Redis spaces its first grant of any key
    # one interval after the first call it answered, hence the short pause.
    await store.try_acquire(f"{prefix}:warm-up", interval=0.001)
    await anyio.sleep(0.01)
    await _timed([f"{prefix}:w{i}" for i in range(min(calls, 100))], acquire)
    cost.acquire.append(await _timed([f"{prefix}:{i}" for i in range(calls)], acquire))
    cost.lease.append(await _timed([f"holder-{i % 4}" for i in range(calls)], lease))


async def _cost(backend: str, target: str, calls: int, rounds: int) -> Cost:
    cost = Cost()
    store = _open(backend, target)
    try:
        for _ in range(rounds):
            await _cost_round(store, calls, cost)
    finally:
        await store.aclose()
    return cost


def _cost_table(costs: dict[str, Cost], args: argparse.Namespace) -> dict[str, Any]:
    rows: list[list[Any]] = []
    for backend, cost in costs.items():
        numbers = [
            round(statistics.median(pair[i] for pair in pairs), 1)
            for pairs in (cost.acquire, cost.lease)
            for i in (0, 1)
        ]
        rows.append([backend, *numbers])
    title = (
        f"1. Cost per call, microseconds: {args.calls} calls one at a time, "
        f"medians of {args.rounds} rounds"
    )
    columns = ["backend", "acquire p50", "acquire p90", "lease p50", "lease p90"]
    return benchjson.table(title, columns, rows)


# --- part 2: limiter precision ---


class _Recorder:
    """The store as a RateLimiter sees it, noting the store's clock at every grant."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.grants: list[float] = []

    async def try_acquire(self, key: str, *, interval: float) -> float:
        # Shielded: a run that ends mid-call still records a grant the store has made.
        with anyio.CancelScope(shield=True):
            wait, now = await self._store.try_acquire_at(key, interval=interval)
        if wait <= 0:
            self.grants.append(now)
        return float(wait)


@dataclass
class Spec:
    backend: str
    target: str
    key: str
    rate: float
    headroom: float
    coroutines: int
    seconds: float


async def _hammer(
    acquire: Callable[[], Awaitable[object]], coroutines: int, seconds: float
) -> list[float]:
    local: list[float] = []

    async def caller() -> None:
        while True:
            await acquire()
            local.append(time.time())

    with anyio.move_on_after(seconds):
        async with anyio.create_task_group() as tg:
            for _ in range(coroutines):
                tg.start_soon(caller)
    return local


async def _limiter_run(
    spec: Spec, barrier: Barrier | None = None
) -> tuple[list[float], list[float]]:
    store = _open(spec.backend, spec.target)
    try:
        recorder = _Recorder(store)
        await store.try_acquire(f"{spec.key}:warm-up", interval=1.0)
        limiter = RateLimiter(
            cast("AccountStore", recorder), spec.key, rate=spec.rate, headroom=spec.headroom
        )
        if barrier is not None:
            await anyio.to_thread.run_sync(barrier.wait, 60.0)
        local = await _hammer(limiter.acquire, spec.coroutines, spec.seconds)
    finally:
        await store.aclose()
    return recorder.grants, local


def _worker(commands: Any, results: Any, barrier: Barrier) -> None:
    """A spawned process: run each limiter spec it is sent, in step with the others."""
    results.put("ready")
    while (spec := commands.get()) is not None:
        try:
            results.put(anyio.run(_limiter_run, spec, barrier))
        except Exception as exc:  # the parent stops with it instead of waiting for a result
            results.put(f"{spec.backend} arm failed in a worker process: {exc!r}")


class Workers:
    """``count`` spawned processes that run one limiter spec together, started at once."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._results = context.Queue()
        self._commands = [context.Queue() for _ in range(count)]
        barrier = context.Barrier(count)
        self._processes = [
            context.Process(target=_worker, args=(q, self._results, barrier), daemon=True)
            for q in self._commands
        ]
        for process in self._processes:
            process.start()
        for _ in self._processes:  # imports done, so that they don't slow the first arms
            self._results.get(timeout=120)

    def run(self, spec: Spec) -> tuple[list[float], list[float]]:
        for commands in self._commands:
            commands.put(spec)
        store: list[float] = []
        local: list[float] = []
        for _ in self._commands:
            try:
                result = self._results.get(timeout=spec.seconds + 120)
            except queue.Empty:
                raise SystemExit("a worker process gave no result within 2 minutes") from None
            if isinstance(result, str):
                raise SystemExit(result)
            grants, times = result
            store += grants
            local += times
        return store, local

    def close(self) -> None:
        for commands in self._commands:
            commands.put(None)
        for process in self._processes:
            process.join(timeout=10)


async def _aiolimiter_run(limiter: AsyncLimiter, spec: Spec) -> list[float]:
    return await _hammer(limiter.acquire, spec.coroutines, spec.seconds)


@dataclass
class Precision:
    arm: str
    limit: int
    callers: str
    store: list[float]
    local: list[float]


def _window_max(times: list[float]) -> tuple[int, list[int]]:
    counts = [bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)]
    return max(counts, default=0), counts


def _precision_row(result: Precision) -> list[Any]:
    primary = sorted(result.store or result.local)
    span = primary[-1] - primary[0] if len(primary) > 1 else 0.0
    rate = (len(primary) - 1) / span / result.limit if span else float("nan")
    gap = min((b - a for a, b in itertools.pairwise(primary)), default=0.0)
    cells: list[Any] = []
    for times in (result.store, result.local):
        if not times:
            cells += ["-", "-"]
            continue
        top, counts = _window_max(sorted(times))
        cells += [top, sum(c > result.limit for c in counts)]
    head = [result.limit, result.arm, result.callers, len(primary), f"{rate:.1%}"]
    return [*head, round(gap * 1000, 1), *cells]


def _precision_table(results: list[Precision], args: argparse.Namespace) -> dict[str, Any]:
    title = (
        f"2. Limiter precision: one limiter, callers hammering it for {args.seconds:g} s, "
        "one run per arm"
    )
    columns = ["limit", "arm", "callers", "granted", "achieved % of limit", "min gap ms"]
    columns += ["max in 1 s (store)", "over (store)", "max in 1 s (local)", "over (local)"]
    return benchjson.table(title, columns, [_precision_row(r) for r in results])


PRECISION_NOTES = [
    "callers = processes x coroutines; max in 1 s = most grants in any sliding 1 s window; "
    "over = windows [t, t + 1 s) starting at a grant that hold more than the limit; store = "
    "the store's clock at the grant, local = time.time() in the caller after acquire() "
    "returned; achieved % and min gap on the store's clock (aiolimiter: local)",
    "cost: lease = try_lease + release_lease; acquire = a try_acquire that grants",
    "targets: at most the limit in any sliding second, never more; at least 97 % of it",
]


def _store_arms(args: argparse.Namespace, targets: dict[str, str], limit: int) -> Iterator[Spec]:
    for backend in ("memory", *targets):
        for headroom in (0.0, DEFAULT_HEADROOM):
            key = f"bench:rate:{uuid.uuid4().hex}"
            target = targets.get(backend, "")
            yield Spec(backend, target, key, limit, headroom, args.coroutines, args.seconds)


def _precision(args: argparse.Namespace, targets: dict[str, str]) -> list[Precision]:
    results = []
    workers = Workers(args.processes)
    try:
        for limit in args.limits:
            for spec in _store_arms(args, targets, limit):
                arm = f"{spec.backend} headroom {spec.headroom:g}"
                if spec.backend == "memory":
                    store, local = anyio.run(_limiter_run, spec)
                    callers = f"1x{args.coroutines}"
                else:
                    store, local = workers.run(spec)
                    callers = f"{args.processes}x{args.coroutines}"
                results.append(Precision(arm, limit, callers, store, local))
            for arm, max_rate, period in (
                (f"AsyncLimiter({limit}, 1)", limit, 1.0),
                (f"AsyncLimiter(1, {1 / limit:g})", 1, 1 / limit),
            ):
                spec = Spec("aiolimiter", "", "", limit, 0.0, args.coroutines, args.seconds)
                local = anyio.run(_aiolimiter_run, AsyncLimiter(max_rate, period), spec)
                results.append(Precision(arm, limit, f"1x{args.coroutines}", [], local))
    finally:
        workers.close()
    return results


# --- the run ---


def _versions(redis: bool) -> str:
    server = "not installed"
    if redis:
        words = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        server = next((w.split("=")[1] for w in words if w.startswith("v=")), "?")
    return (
        f"SQLite {sqlite3.sqlite_version}; redis-server {server}, redis-py {version('redis')}; "
        f"aiolimiter {version('aiolimiter')}; {os.cpu_count()} CPUs, {platform.machine()}"
    )


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as redis_url:
        folder = Path(tmp)
        targets = {"sqlite": str(folder / "store.sqlite3")}
        if redis_url is not None:
            targets["redis"] = redis_url
        costs = {
            backend: anyio.run(_cost, backend, targets.get(backend, ""), args.calls, args.rounds)
            for backend in ("memory", *targets)
        }
        print(_cost_table(costs, args)["title"], "done", flush=True)
        results = _precision(args, targets)
    notes = [_versions(redis_url is not None), *PRECISION_NOTES]
    if redis_url is None:
        notes.append("redis-server is not installed: no Redis arms (scripts/ensure-redis.sh)")
    benchjson.emit(
        args.json,
        benchmark="store",
        title="The account store: cost per call and limiter precision vs aiolimiter",
        tables=[_cost_table(costs, args), _precision_table(results, args)],
        notes=notes,
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchjson.add_arguments(parser, "500 calls, 3-second runs, the limit of 5/s only")
    parser.add_argument("--calls", type=int, help="calls per round in part 1 (default 2000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, help="length of a part 2 run (default 6)")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--coroutines", type=int, default=8)
    args = parser.parse_args()
    args.calls = args.calls or (500 if args.quick else 2000)
    args.seconds = args.seconds or (3.0 if args.quick else 6.0)
    args.limits = LIMITS[:1] if args.quick else LIMITS
    return args


if __name__ == "__main__":
    main(_parse())
