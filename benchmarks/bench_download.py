"""Downloading one large video: emoclient's ``download`` vs a plain aiohttp loop and curl.

A 127.0.0.1 aiohttp server in its own process serves an MP4-looking body (an ``ftyp`` box,
then filler) of ``--size-mib`` MiB with a Content-Length, as the result host does. Each arm
runs in a fresh child process, so its CPU time and peak RSS are its own:

- ``emoclient``: ``EmoClient.download`` (temporary file, size cap, deadline, MP4 check,
  fsync, atomic rename);
- ``aiohttp+fsync``: ``iter_chunked(256 KiB)`` written straight to a file, then ``fsync``;
- ``aiohttp``: the same loop without ``fsync``;
- ``curl -o`` when curl is installed (its own CPU time, as a child of the arm process).

Rounds are interleaved (every arm once per round, the order rotated) and medians are shown:
throughput in MiB/s, CPU seconds per GiB (user + system) and peak RSS in MiB.

    python benchmarks/bench_download.py            # 1 GiB, 5 rounds
    python benchmarks/bench_download.py --quick    # 256 MiB, 3 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchjson

NAME = "download"
TITLE = "Download of one large video: emoclient vs a plain aiohttp loop and curl"
_CHUNK = 256 * 1024
_BLOCK = 1 << 20
_BASELINE_ARM = "emoclient (baseline)"


# --- the server (child process) ----------------------------------------------------------


def _serve(size: int) -> None:
    import asyncio

    from aiohttp import web

    block = bytearray(_BLOCK)
    block[:24] = (24).to_bytes(4, "big") + b"ftypisom" + b"\0" * 12
    head = bytes(block)
    filler = bytes(_BLOCK)

    async def video(request: web.Request) -> web.StreamResponse:
        length = _BLOCK if request.path == "/small.mp4" else size
        resp = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        resp.content_length = length
        await resp.prepare(request)
        sent = 0
        while sent < length:
            piece = (head if sent == 0 else filler)[: min(_BLOCK, length - sent)]
            await resp.write(piece)
            sent += len(piece)
        await resp.write_eof()
        return resp

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/video.mp4", video)
        app.router.add_get("/small.mp4", video)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"http://127.0.0.1:{port}/video.mp4", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the arms (child processes) ----------------------------------------------------------


class _Meter:
    """CPU time (user + system) and wall time of what runs between start() and stop()."""

    def start(self) -> None:
        self._usage = resource.getrusage(resource.RUSAGE_SELF)
        self._started = time.perf_counter()

    def stop(self) -> dict[str, float]:
        wall = time.perf_counter() - self._started
        now = resource.getrusage(resource.RUSAGE_SELF)
        system = now.ru_stime - self._usage.ru_stime
        cpu = now.ru_utime - self._usage.ru_utime + system
        return {"wall": wall, "cpu": cpu, "sys": system, "rss_mib": now.ru_maxrss / 1024}


async def _emoclient(url: str, path: Path, meter: _Meter) -> dict[str, float]:
    from emoclient import EmoClient

    async with EmoClient("sk-bench", base_url="http://127.0.0.1:9/api/v1") as client:
        # A small download first: the session, its connection and lazy imports are ready.
        warm = path.with_name("warm-up.mp4")
        await client.download(url.replace("/video.mp4", "/small.mp4"), warm)
        warm.unlink()
        meter.start()
        await client.download(url, path)
        return meter.stop()


async def _plain(url: str, path: Path, meter: _Meter, *, fsync: bool) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        meter.start()
        async with session.get(url) as resp:
            resp.raise_for_status()
            with path.open("wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    out.write(chunk)
                if fsync:
                    out.flush()
                    os.fsync(out.fileno())
        return meter.stop()


def _arm(arm: str, url: str, path: Path) -> dict[str, float]:
    import asyncio

    meter = _Meter()
    if arm == "curl":
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(["curl", "-sS", "--fail", "-o", str(path), url], check=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - children.ru_utime + after.ru_stime - children.ru_stime
        result = {"wall": wall, "cpu": cpu, "rss_mib": after.ru_maxrss / 1024}
    elif arm == "emoclient":
        result = asyncio.run(_emoclient(url, path, meter))
    else:
        result = asyncio.run(_plain(url, path, meter, fsync=arm == "aiohttp+fsync"))
    return {**result, "bytes": path.stat().st_size}


# --- the driver ----------------------------------------------------------------------------


def _run_arm(arm: str, url: str, folder: Path, baseline: str | None) -> dict[str, float]:
    path = folder / "video.mp4"
    paths = sys.path
    if arm == _BASELINE_ARM and baseline:
        paths = [baseline, *sys.path]
        arm = "emoclient"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--_arm", arm, "--_url", url, "--_path", str(path)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    except subprocess.CalledProcessError as exc:
        raise SystemExit(f"arm {arm} failed:\n{exc.stderr}") from exc
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    path.unlink(missing_ok=True)
    return result


def _measure(args: argparse.Namespace) -> tuple[list[str], dict[str, list[dict[str, float]]]]:
    size = args.size_mib * _BLOCK
    arms = ["emoclient", "aiohttp+fsync", "aiohttp"]
    if args.baseline:
        arms.insert(1, _BASELINE_ARM)
    if shutil.which("curl"):
        arms.append("curl")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = subprocess.Popen(
        [sys.executable, __file__, "--_serve", str(size)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        if not url:
            raise SystemExit("the download server did not start")
        results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            for round_ in range(args.rounds):
                shift = round_ % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    result = _run_arm(arm, url, Path(tmp), args.baseline)
                    if result["bytes"] != size:
                        raise SystemExit(f"arm {arm} saved {result['bytes']} of {size} bytes")
                    results[arm].append(result)
    finally:
        server.terminate()
        server.wait()
    return arms, results


def _table(
    args: argparse.Namespace, arms: list[str], results: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    gib = args.size_mib / 1024
    rows: list[list[Any]] = []
    ref = {
        "mibs": statistics.median(args.size_mib / r["wall"] for r in results["aiohttp+fsync"]),
        "cpu": statistics.median(r["cpu"] / gib for r in results["aiohttp+fsync"]),
    }
    for arm in arms:
        runs = results[arm]
        mibs = statistics.median(args.size_mib / r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] / gib for r in runs)
        rss = statistics.median(r["rss_mib"] for r in runs)
        rows.append(
            [
                arm,
                round(mibs, 1),
                round(mibs / ref["mibs"], 2),
                round(cpu, 3),
                round(cpu / ref["cpu"], 2),
                round(rss, 1),
            ]
        )
    columns = [
        "arm",
        "MiB/s",
        "speed vs aiohttp+fsync",
        "CPU s per GiB",
        "CPU vs aiohttp+fsync",
        "peak RSS MiB",
    ]
    return {
        "benchmark": NAME,
        "title": TITLE,
        "tables": [
            {
                "title": f"{args.size_mib} MiB from 127.0.0.1, medians of {args.rounds} rounds",
                "columns": columns,
                "rows": rows,
            }
        ],
        "notes": [
            "Targets (issue 11): emoclient >= 0.9x the aiohttp+fsync loop's speed, CPU per GiB "
            "<= 1.3x its, RSS flat.",
            "Each arm runs in its own process; the server in another. Rounds are interleaved.",
            f"Written to {args.dir or tempfile.gettempdir()}.",
        ],
        "extra": {"size_mib": args.size_mib, "rounds": args.rounds, "raw": results},
    }


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=TITLE)
    parser.add_argument("--quick", action="store_true", help="256 MiB, 3 rounds")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--size-mib", type=int, default=None, help="body size (default 1024)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 5)")
    parser.add_argument("--dir", default=None, help="where the files are written")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also measure the emoclient of another checkout (e.g. the main branch)",
    )
    parser.add_argument("--_serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--_arm", help=argparse.SUPPRESS)
    parser.add_argument("--_url", help=argparse.SUPPRESS)
    parser.add_argument("--_path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.size_mib is None:
        args.size_mib = 256 if args.quick else 1024
    if args.rounds is None:
        args.rounds = 3 if args.quick else 5
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args._serve is not None:
        _serve(args._serve)
        return
    if args._arm is not None:
        print(json.dumps(_arm(args._arm, args._url, Path(args._path))))
        return
    arms, results = _measure(args)
    report = _table(args, arms, results)
    benchjson.emit(Path(args.json) if args.json else None, **report)


if __name__ == "__main__":
    main()
