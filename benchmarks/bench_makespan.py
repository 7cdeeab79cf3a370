"""Makespan: one account's EMO jobs through emoclient's Batch, the official SDK and a plain client.

The same jobs (one distinct portrait each, 2-second speech clips) go through four arms on the
in-process emulator, each arm on its own account and in its own process (``makespan_arm.py``,
which says exactly what each arm does):

- ``batch``: emoclient's ``Batch``;
- ``sdk-sequential``: the official SDK's ``AioVideoSynthesis``, one job after another;
- ``sdk-gathered``: the same SDK calls, every job under one ``asyncio.gather``;
- ``aiohttp``: a plain hand-written client, aiohttp + aiolimiter, every job gathered.

Twice: with **local files** (each client uploads them to the emulator's temporary storage)
and with **URL inputs** (image and audio as http URLs served by a 127.0.0.1 server; the
emulator fetches them). The SDK arms run twice more in a separate venv holding the SDK's newest
release from PyPI (``benchmarks/.sdk-venv``, built on first use); the pinned one is the dev
venv's.

Time is compressed: the emulator runs ``--speed`` times faster than real time, its rate limits
count the service's N requests per sliding second in windows of 1/speed real seconds, and every
client's limits and polling intervals are scaled by the same factor, so the numbers are those
of a real account. A task takes 30 + 5 x 2 = 40 service seconds. Per arm: makespan / ideal
(makespan: the arm's start to its last video on disk; ideal: the delivered jobs' processing
back to back, 40 s each), slot busy (the running slot's busy time over its span from first start
to last end), 429 answers, lost jobs (no video on disk), duplicate submissions (tasks beyond one
per job), task queries per job, completion -> file on disk p50/p95 in service seconds (the
task's end on the emulator's clock to the file's mtime), and the
arm process's peak RSS. The running slot's timeline per arm is kept for the chart.

    python benchmarks/bench_makespan.py --quick             # about a minute and a half
    python benchmarks/bench_makespan.py --jobs 20 --speed 25 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import benchjson
from aiohttp import web

from emoclient.emulator import EmulatorConfig, RunningEmulator, account_label, serve
from emoclient.emulator.samples import make_portrait, make_speech

HERE = Path(__file__).resolve().parent
SDK_VENV = HERE / ".sdk-venv"
ARMS = ("batch", "sdk-sequential", "sdk-gathered", "aiohttp")
SDK_ARMS = ("sdk-sequential", "sdk-gathered")
CLIP_SECONDS = 2.0
TASK_SECONDS = 30.0 + 5.0 * CLIP_SECONDS


@dataclass
class Run:
    """One arm, one round."""

    arm: str
    inputs: str
    sdk: str
    jobs: int
    ideal: float  # service seconds
    makespan: float
    busy: float
    throttled: int
    lost: int
    duplicates: int
    queries: float
    to_disk: list[float]
    rss_mib: float
    timeline: list[list[float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# --- the inputs and the servers ---


def _inputs(folder: Path, count: int) -> list[dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    sounds = [
        make_speech(folder / f"s{i}.wav", seconds=CLIP_SECONDS, seed=i).name for i in range(2)
    ]
    images = [
        make_portrait(folder / f"p{i}.png", width=480, height=640, seed=i).name
        for i in range(count)
    ]
    return [{"image": images[i], "audio": sounds[i % 2]} for i in range(count)]


async def _file_server(folder: Path) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_static("/", folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _compress_rate_windows(speed: float) -> None:
    """The emulator's sliding one-second windows last 1/speed real seconds from now on.

    The service allows N requests in any sliding second; time compressed by ``speed``, that
    is N requests in any 1/speed real seconds, so a burst is refused as it would be for real.
    (Multiplying N by the speed instead would let a burst of N x speed through at once.)
    """
    from emoclient.emulator import _ratelimit

    _ratelimit.WINDOW_SECONDS = 1.0 / speed


# --- the newest SDK in its own venv ---


def sdk_venv(refresh: bool) -> tuple[str | None, str]:
    """The newest SDK's interpreter (None if it cannot be had) and its version or the reason."""
    python = SDK_VENV / "bin" / "python"
    try:
        if refresh or not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(SDK_VENV)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "--upgrade", "dashscope", "aiohttp"], check=True, timeout=600)
        probe = [
            str(python),
            "-c",
            'from importlib.metadata import version; print(version("dashscope"))',
        ]
        answer = subprocess.run(probe, capture_output=True, text=True, check=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"the newest SDK could not be installed in {SDK_VENV}: {exc}"
    return str(python), answer.stdout.strip()


def _pinned_sdk() -> str:
    from importlib.metadata import version

    return version("dashscope")


# --- one arm ---


async def _arm(
    emulator: RunningEmulator,
    anchor: tuple[float, float],
    python: str,
    arm: str,
    inputs: str,
    sdk: str,
    jobs: list[dict[str, str]],
    args: argparse.Namespace,
    folder: Path,
) -> Run:
    key = f"sk-bench-{uuid.uuid4().hex[:12]}"
    ideal = len(jobs) * TASK_SECONDS
    run_dir = folder / f"{arm}-{inputs}-{key[-6:]}"
    run_dir.mkdir()
    spec = {
        "arm": arm,
        "base_url": emulator.base_url,
        "key": key,
        "speed": args.speed,
        "jobs": jobs,
        "out": str(run_dir / "out"),
        "deadline": args.deadline_factor * ideal / args.speed + 10.0,
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    command = [python, str(HERE / "makespan_arm.py"), str(run_dir / "spec.json")]
    command.append(str(run_dir / "result.json"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE")}
    done = await anyio.run_process(command, check=False, env=env)
    if done.returncode != 0 or not (run_dir / "result.json").exists():
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SystemExit(f"arm {arm} ({inputs}) exited {done.returncode}: {' | '.join(tail)}")
    result = json.loads((run_dir / "result.json").read_text())
    return _measure(emulator, anchor, key, arm, inputs, sdk, jobs, result, args.speed, ideal)


def _measure(
    emulator: RunningEmulator,
    anchor: tuple[float, float],
    key: str,
    arm: str,
    inputs: str,
    sdk: str,
    jobs: list[dict[str, str]],
    result: dict[str, Any],
    speed: float,
    ideal: float,
) -> Run:
    virtual0, wall0 = anchor
    started = result["started"]

    def service(virtual: float) -> float:  # service seconds since the arm started
        return (wall0 + (virtual - virtual0) / speed - started) * speed

    stats = stats_of(emulator, key)
    tasks = {t.task_id: t for t in emulator.state.accounts[account_label(key)].tasks}
    spans = sorted(
        (service(t.scheduled_time), service(t.end_time))
        for t in tasks.values()
        if t.scheduled_time is not None and t.end_time is not None
    )
    busy = sum(end - start for start, end in spans)
    span = spans[-1][1] - spans[0][0] if spans else 0.0
    delivered = result["videos"]
    on_disk = {label: (started - Path(v["path"]).stat().st_mtime) for label, v in delivered.items()}
    to_disk = []
    timeline = []
    for label, video in delivered.items():
        task = tasks.get(video["task_id"])
        if task is not None and task.end_time is not None:
            to_disk.append(-on_disk[label] * speed - service(task.end_time))
    for t in tasks.values():
        if t.scheduled_time is not None and t.end_time is not None:
            job = next((int(k) for k, v in delivered.items() if v["task_id"] == t.task_id), -1)
            timeline.append(
                [job, round(service(t.scheduled_time), 2), round(service(t.end_time), 2)]
            )
    last = max((-s * speed for s in on_disk.values()), default=(result["ended"] - started) * speed)
    return Run(
        arm=arm,
        inputs=inputs,
        sdk=sdk,
        jobs=len(jobs),
        ideal=max(1, len(delivered)) * TASK_SECONDS,  # a lost job is no work to compare with
        makespan=last,
        busy=busy / span if span else 0.0,
        throttled=sum(route["throttled"] for route in stats["routes"].values()),
        lost=len(jobs) - len(delivered),
        duplicates=max(0, len(tasks) - len(jobs)),
        queries=stats["routes"].get("task_get", {"requests": 0})["requests"] / len(jobs),
        to_disk=to_disk,
        rss_mib=result["peak_rss_kib"] / 1024,
        timeline=sorted(timeline, key=lambda row: row[1]),
        errors=result["errors"][:3],
    )


def stats_of(emulator: RunningEmulator, key: str) -> dict[str, Any]:
    from emoclient.emulator._stats import stats_document

    document: dict[str, Any] = stats_document(emulator.state)["accounts"][account_label(key)]
    return document


# --- the run ---


async def _rounds(
    args: argparse.Namespace, folder: Path, newest: tuple[str | None, str]
) -> list[Run]:
    local = _inputs(folder / "inputs", args.jobs)
    runner, files = await _file_server(folder / "inputs")
    by_url = [{k: f"{files}/{v}" for k, v in job.items()} for job in local]
    by_path = [{k: str(folder / "inputs" / v) for k, v in job.items()} for job in local]
    pinned = _pinned_sdk()
    arms = [(sys.executable, arm, pinned if arm in SDK_ARMS else "") for arm in ARMS]
    if newest[0] is not None:
        arms += [(newest[0], arm, newest[1]) for arm in SDK_ARMS]
    _compress_rate_windows(args.speed)
    config = EmulatorConfig(speed=args.speed, render=False)  # the service's own limits
    runs = []
    try:
        async with serve(config) as emulator:
            anchor = (emulator.now(), time.time())
            # One unmeasured job first: the emulator's first detection and upload load what
            # it needs (image decoding), which would otherwise count against the first arm.
            await _arm(
                emulator, anchor, sys.executable, "batch", "local", "", by_path[:1], args, folder
            )
            for round_ in range(args.rounds):
                for inputs, jobs in (("local", by_path), ("url", by_url)):
                    for python, arm, sdk in arms:
                        run = await _arm(
                            emulator, anchor, python, arm, inputs, sdk, jobs, args, folder
                        )
                        print(
                            f"  round {round_ + 1} {arm} {sdk} {inputs}: "
                            f"{run.makespan / run.ideal:.3f}x ideal, {run.lost} lost",
                            file=sys.stderr,
                        )
                        runs.append(run)
    finally:
        await runner.cleanup()
    return runs


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _tables(runs: list[Run], args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[Any]]:
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.inputs, run.arm, run.sdk), []).append(run)
    columns = [
        "inputs", "arm", "SDK", "makespan / ideal", "slot busy", "429s", "lost",
        "dup. submits", "queries / job", "to disk p50 s", "to disk p95 s", "peak RSS MiB",
    ]  # fmt: skip
    rows = []
    timelines = []
    for (inputs, arm, sdk), group in groups.items():
        to_disk = [d for run in group for d in run.to_disk]
        rows.append(
            [
                inputs,
                arm,
                sdk or "-",
                round(_median([r.makespan / r.ideal for r in group]), 3),
                f"{_median([r.busy for r in group]):.1%}",
                round(_median([r.throttled for r in group])),
                round(_median([r.lost for r in group])),
                round(_median([r.duplicates for r in group])),
                round(_median([r.queries for r in group]), 1),
                round(_percentile(to_disk, 0.5), 2),
                round(_percentile(to_disk, 0.95), 2),
                round(_median([r.rss_mib for r in group]), 1),
            ]
        )
        first = group[0]
        timelines.append(
            {
                "label": f"{inputs}: {arm}" + (f" {sdk}" if sdk else ""),
                "ideal": first.ideal,
                "makespan": round(first.makespan, 2),
                "tasks": first.timeline,
            }
        )
    title = (
        f"{args.jobs} EMO jobs ({CLIP_SECONDS:g} s clips, {TASK_SECONDS:g} s of processing each), "
        f"time compressed {args.speed:g}x, medians of {args.rounds} round(s)"
    )
    return [benchjson.table(title, columns, rows)], timelines


def main(args: argparse.Namespace) -> None:
    newest = sdk_venv(args.refresh_sdk) if not args.no_newest_sdk else (None, "skipped")
    with tempfile.TemporaryDirectory() as tmp:
        runs = anyio.run(_rounds, args, Path(tmp), newest)
    tables, timelines = _tables(runs, args)
    notes = [
        "ideal = the delivered jobs' processing back to back (a lost job is not counted); "
        "makespan = the arm's start to its last video on disk; times in service seconds (real "
        "seconds x the speed factor); the emulator's limits are the service's, counted in "
        "sliding windows of 1/speed real seconds",
        "slot busy = the running slot's busy time over its span (first start to last end)",
        "SDK: EMO has no SDK class of its own; the SDK's video-synthesis class "
        "AioVideoSynthesis (async_call + wait) is its async path for emo-v1, detection goes "
        "through BaseAioApi.call, the EMO image is uploaded with the SDK's "
        "check_and_upload_local, downloads are a plain aiohttp loop",
    ]
    if newest[0] is None:
        notes.append(newest[1])
    for run in runs:
        if run.errors:
            notes.append(f"{run.inputs} {run.arm} {run.sdk}: first errors: {'; '.join(run.errors)}")
            break
    benchjson.emit(
        args.json,
        benchmark="makespan",
        title="Makespan: Batch vs the official SDK vs aiohttp + aiolimiter",
        tables=tables,
        notes=notes,
        extra={"timelines": timelines, "speed": args.speed, "jobs": args.jobs},
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchjson.add_arguments(parser, "6 jobs at 50x, one round")
    parser.add_argument("--jobs", type=int, help="jobs per arm (default 20; quick 6)")
    parser.add_argument("--speed", type=float, help="time compression (default 25; quick 50)")
    parser.add_argument("--rounds", type=int, help="rounds, medians over them (default 3; quick 1)")
    parser.add_argument(
        "--deadline-factor", type=float, default=3.0, help="an arm stops at this x ideal + 10 s"
    )
    parser.add_argument("--no-newest-sdk", action="store_true", help="only the pinned SDK")
    parser.add_argument("--refresh-sdk", action="store_true", help="reinstall the newest SDK")
    args = parser.parse_args()
    args.jobs = args.jobs or (6 if args.quick else 20)
    args.speed = args.speed or (50.0 if args.quick else 25.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return args


if __name__ == "__main__":
    main(_parse())
