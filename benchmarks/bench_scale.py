"""Many jobs in one batch: the client's CPU per job, its memory and its journal.

The emulator runs in a process of its own with every rate limit off, tasks that take no
time and placeholder videos, so what is left is the client's own work per job: hashing and
probing its inputs, preparing it (detection and uploads, one per distinct file), the journal,
the account store, and the job's HTTP requests (submit, queries, download). Each batch runs in
a fresh child process (its CPU time and peak RSS are its own; inputs are drawn beforehand).

Jobs cycle over a few portraits and voices (``--images``, ``--voices``), each with its own
output, as a real batch of many videos of few people does. Measured per batch size:

- client CPU per job (user + system, every thread), and the same for a loop of plain aiohttp
  GETs against the same emulator (``CPU per request``): the target is at most 2x the CPU of the
  requests a job makes;
- peak RSS of the client process;
- the journal: its size, and its write transactions per job (all of them, and those made
  durable with an fsync, i.e. committed with ``synchronous = FULL``).

    python benchmarks/bench_scale.py                      # 1,000 / 5,000 / 10,000 jobs
    python benchmarks/bench_scale.py --quick              # 1,000 jobs
    python benchmarks/bench_scale.py --baseline /work/main   # also the client of another tree
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchjson

NAME = "scale"
TITLE = "Batches of 1,000 to 10,000 EMO jobs: client CPU per job, memory and journal writes"
_WINDOW = 64


# --- the emulator (child process) ----------------------------------------------------------


def _serve() -> None:
    import anyio

    from emoclient.emulator import EmulatorConfig, serve

    config = EmulatorConfig(
        speed=1.0,
        render=False,
        rate_limits={},
        processing_base_seconds=0.0,
        processing_per_output_second=0.0,
    )

    async def main() -> None:
        async with serve(config) as emulator:
            print(emulator.base_url, flush=True)
            await anyio.sleep_forever()

    anyio.run(main)


# --- one batch (child process) ---------------------------------------------------------------


class _JournalWrites:
    """Counts the journal's write transactions through SQLite's statement trace."""

    _WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
    _SYNC = re.compile(r"\s*PRAGMA\s+synchronous\s*=\s*(\w+)", re.IGNORECASE)

    def __init__(self) -> None:
        self.transactions = 0
        self.durable = 0
        self._in_tx = False
        self._wrote = False
        self._full = True  # SQLite's default in WAL mode is FULL unless compiled otherwise

    def install(self, journal_name: str) -> None:
        connect = sqlite3.connect

        def traced(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = connect(database, *args, **kwargs)
            if str(database).endswith(journal_name):
                conn.set_trace_callback(self._statement)
            return conn

        sqlite3.connect = traced  # type: ignore[assignment]

    def _statement(self, sql: str) -> None:
        head = sql.lstrip()[:24].upper()
        sync = self._SYNC.match(sql)
        if sync:
            self._full = sync[1].upper() in ("FULL", "2", "EXTRA", "3")
        elif head.startswith("BEGIN"):
            self._in_tx, self._wrote = True, False
        elif head.startswith(("COMMIT", "END")):
            if self._in_tx and self._wrote:
                self._count()
            self._in_tx = False
        elif head.startswith("ROLLBACK"):
            self._in_tx = False
        elif self._WRITE.match(sql):
            if self._in_tx:
                self._wrote = True
            else:
                self._count()

    def _count(self) -> None:
        self.transactions += 1
        self.durable += self._full


async def _batch(spec: dict[str, Any]) -> dict[str, Any]:
    from emoclient import (
        Batch,
        EmoClient,
        EmoJob,
        MemoryStore,
        Rates,
        RetryPolicy,
        SchedulerOptions,
    )
    from emoclient._batch.batch import JOURNAL_NAME

    writes = _JournalWrites()
    writes.install(JOURNAL_NAME)
    folder = Path(spec["folder"])
    images, voices = spec["images"], spec["voices"]
    jobs = [
        EmoJob(
            image=images[i % len(images)],
            audio=voices[(i // len(images)) % len(voices)],
            output=f"v{i}.mp4",
            label=f"job {i}",
        )
        for i in range(spec["jobs"])
    ]
    fast = 1e6
    rates = Rates(submit=fast, query=fast, detect=fast, upload=fast, window=_WINDOW, headroom=0)
    options = SchedulerOptions(
        window=_WINDOW,
        poll_min=0.01,
        poll_max=0.05,
        pending_poll=0.05,
        queries_per_second=fast,
        download_workers=4,
        retry=RetryPolicy(max_attempts=4, base_delay=0.05, max_delay=0.5),
    )
    out = folder / "out"
    started_cpu, started = time.process_time(), time.perf_counter()
    statuses: dict[str, int] = {}
    store = MemoryStore() if spec["store"] == "memory" else folder / "store.sqlite3"
    async with (
        EmoClient(spec["key"], base_url=spec["base_url"], rates=rates, store=store) as client,
        Batch(client, out_dir=out, window=_WINDOW, options=options) as batch,
    ):
        async for result in batch.run(jobs):
            statuses[result.status] = statuses.get(result.status, 0) + 1
    cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
    journal = sum(p.stat().st_size for p in out.glob(JOURNAL_NAME + "*"))
    return {
        "cpu": cpu,
        "wall": wall,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "journal_bytes": journal,
        "writes": writes.transactions,
        "durable": writes.durable,
        "statuses": statuses,
    }


async def _plain_requests(spec: dict[str, Any]) -> dict[str, Any]:
    """CPU per plain aiohttp GET of a task (an unknown one: a small JSON answer)."""
    import aiohttp

    count = spec["requests"]
    url = spec["base_url"] + "/tasks/0000-unknown"
    headers = {"Authorization": f"Bearer {spec['key']}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers=headers) as resp:
            await resp.read()
        started = time.process_time()
        for _ in range(count):
            async with session.get(url, headers=headers) as resp:
                await resp.read()
        return {"cpu_per_request": (time.process_time() - started) / count}


def _child(spec_json: str) -> None:
    import anyio

    spec = json.loads(spec_json)
    work = _plain_requests if spec["mode"] == "requests" else _batch
    print(json.dumps(anyio.run(work, spec)))


# --- the driver ------------------------------------------------------------------------------


def _run_child(spec: dict[str, Any], pythonpath: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--_child", json.dumps(spec)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"a benchmark child failed:\n{exc.stderr[-4000:]}") from exc
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _inputs(folder: Path, images: int, voices: int) -> tuple[list[str], list[str]]:
    from emoclient.emulator.samples import make_portrait, make_speech

    portraits = [
        str(make_portrait(folder / f"p{i}.png", width=480, height=640, seed=i))
        for i in range(images)
    ]
    sounds = [
        str(make_speech(folder / f"s{i}.wav", seconds=1.0 + i * 0.25, seed=i))
        for i in range(voices)
    ]
    return portraits, sounds


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    trees = {"emoclient": list(sys.path)}
    if args.baseline:
        trees["emoclient (baseline)"] = [args.baseline, *sys.path]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    emulator = subprocess.Popen(
        [sys.executable, __file__, "--_serve"], stdout=subprocess.PIPE, text=True, env=env
    )
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        t: {n: [] for n in args.jobs} for t in trees
    }
    per_request: list[float] = []
    try:
        assert emulator.stdout is not None
        base_url = emulator.stdout.readline().strip()
        if not base_url:
            raise SystemExit("the emulator did not start")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            images, voices = _inputs(folder, args.images, args.voices)
            serial = 0
            for _ in range(args.rounds):
                spec: dict[str, Any] = {
                    "mode": "requests",
                    "base_url": base_url,
                    "key": "sk-bench-requests",
                }
                per_request.append(
                    _run_child({**spec, "requests": 2000}, sys.path)["cpu_per_request"]
                )
                for count in args.jobs:
                    for tree, path in trees.items():
                        serial += 1
                        run_dir = folder / f"run{serial}"
                        run_dir.mkdir()
                        spec = {
                            "mode": "batch",
                            "base_url": base_url,
                            "key": f"sk-bench-scale-{serial}",
                            "folder": str(run_dir),
                            "images": images,
                            "voices": voices,
                            "jobs": count,
                            "store": args.store,
                        }
                        result = _run_child(spec, path)
                        stats = _account_stats(base_url, spec["key"])
                        result["requests_per_job"] = stats / count
                        runs[tree][count].append(result)
                        print(
                            f"  {tree}: {count} jobs, {result['cpu'] / count * 1000:.2f} ms CPU "
                            f"per job, {result['wall']:.1f} s, {result['statuses']}",
                            file=sys.stderr,
                        )
    finally:
        emulator.terminate()
        emulator.wait()
    return {"runs": runs, "cpu_per_request": statistics.median(per_request)}


def _account_stats(base_url: str, key: str) -> int:
    """HTTP requests the account made (every route of the API and the file host)."""
    import urllib.request

    from emoclient.emulator import account_label

    root = base_url.removesuffix("/api/v1")
    with urllib.request.urlopen(f"{root}/_emulator/stats") as resp:
        stats = json.load(resp)
    routes = stats["accounts"][account_label(key)]["routes"]
    return int(sum(route["requests"] for route in routes.values()))


def _report(args: argparse.Namespace, measured: dict[str, Any]) -> dict[str, Any]:
    per_request = measured["cpu_per_request"]
    rows: list[list[Any]] = []
    for tree, by_count in measured["runs"].items():
        for count, runs in by_count.items():

            def med(field: str, runs: list[dict[str, Any]] = runs) -> float:
                return statistics.median(float(r[field]) for r in runs)

            cpu_ms = med("cpu") / count * 1000
            requests = med("requests_per_job")
            target_ms = 2 * requests * per_request * 1000
            rows.append(
                [
                    tree,
                    count,
                    round(cpu_ms, 2),
                    round(requests, 2),
                    round(target_ms, 2),
                    round(cpu_ms / target_ms, 2),
                    round(med("rss_mib"), 1),
                    round(med("journal_bytes") / 2**20, 2),
                    round(med("writes") / count, 2),
                    round(med("durable") / count, 2),
                    round(med("wall"), 1),
                ]
            )
    columns = [
        "client",
        "jobs",
        "CPU ms/job",
        "HTTP requests/job",
        "target ms/job (2x requests)",
        "CPU vs target",
        "peak RSS MiB",
        "journal MiB",
        "journal writes/job",
        "fsynced writes/job",
        "wall s",
    ]
    return {
        "benchmark": NAME,
        "title": TITLE,
        "tables": [
            {
                "title": (
                    f"EMO jobs over {args.images} portraits x {args.voices} voices, window "
                    f"{_WINDOW}, limits off, {args.store} account store; medians of "
                    f"{args.rounds} round(s)"
                ),
                "columns": columns,
                "rows": rows,
            }
        ],
        "notes": [
            f"A plain aiohttp GET against the same emulator cost {per_request * 1000:.3f} ms of "
            "client CPU (median); the target is 2x that per HTTP request a job makes.",
            "Targets (issue 11): CPU per job <= 2x its requests' CPU at 10,000 jobs, RSS < 150 "
            "MB, one durable journal write per submit, the rest grouped.",
            "Journal writes are write transactions seen through SQLite's statement trace; "
            "'fsynced' ones were committed with synchronous = FULL.",
        ],
        "extra": {"cpu_per_request_s": per_request, "runs": measured["runs"]},
    }


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs only")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--jobs", type=lambda s: [int(n) for n in s.split(",")], help="batch sizes, e.g. 1000,5000"
    )
    parser.add_argument("--images", type=int, default=8, help="distinct portraits")
    parser.add_argument("--voices", type=int, default=4, help="distinct voice clips")
    parser.add_argument("--rounds", type=int, default=1, help="rounds (medians are shown)")
    parser.add_argument(
        "--store",
        choices=("file", "memory"),
        default="file",
        help="the account store: the default SQLite file, or in memory (one process)",
    )
    parser.add_argument(
        "--baseline", metavar="DIR", help="also measure the emoclient of another checkout"
    )
    parser.add_argument("--_serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs is None:
        args.jobs = [1000] if args.quick else [1000, 5000, 10000]
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args._serve:
        _serve()
        return
    if args._child is not None:
        _child(args._child)
        return
    report = _report(args, _measure(args))
    benchjson.emit(Path(args.json) if args.json else None, **report)


if __name__ == "__main__":
    main()
