"""A batch on the emulator: emoclient's scheduler vs two naive strategies, side by side.

Arms (each on its own emulator account, the same jobs):

- ``emoclient``: ``Batch`` with its defaults (window of 2: one running plus one queued,
  budgeted poller, download lane).
- ``window=1``: the same ``Batch`` with no lookahead (submit the next task only once the
  previous one has ended), i.e. what a loop of ``generate_emo`` calls does.
- ``sdk-style``: submit every job at once, then wait on each task with the official SDK's
  schedule (1, 1, 2, 2, 2, 4, 4, 4, 5, 5, ... s between queries), downloading as each ends.

Time is compressed consistently: the emulator runs ``--speed`` times faster than real time,
and every rate limit (service and client side) and every polling interval is scaled by the
same factor, so the numbers are those of a real account ``--speed`` times slower. Printed per
arm, as medians over ``--repeat`` runs: slot utilisation (busy / span in the emulator's
stats), task queries spent per job, 429 answers, submissions, and wall time (real seconds,
and the equivalent service time).

    python benchmarks/bench_batch.py --jobs 6 --speed 20 --repeat 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from emoclient import (
    Batch,
    EmoClient,
    EmoJob,
    MemoryStore,
    Model,
    Rates,
    RetryPolicy,
    SchedulerOptions,
    TaskStatus,
)
from emoclient.emulator import EmulatorConfig, RunningEmulator, account_label, serve
from emoclient.emulator.samples import make_portrait, make_speech

SDK_SCHEDULE = (1, 1, 2, 2, 2, 4, 4, 4)  # then 5 s forever (API.md section 5)


@dataclass
class ArmResult:
    utilisation: float
    queries_per_job: float
    throttled: int
    submissions: int
    wall: float
    videos: int


def _client(emulator: RunningEmulator, key: str, speed: float) -> EmoClient:
    rates = Rates(submit=5 * speed, query=20 * speed, detect=5 * speed, upload=100 * speed)
    return EmoClient(key, base_url=emulator.base_url, rates=rates, store=MemoryStore())


def _options(speed: float, window: int) -> SchedulerOptions:
    return SchedulerOptions(
        window=window,
        poll_min=0.05 / speed,
        poll_max=30.0 / speed,
        pending_poll=60.0 / speed,
        queries_per_second=5.0 * speed,
        retry=RetryPolicy(max_attempts=4, base_delay=0.5 / speed, max_delay=8.0 / speed),
    )


async def _run_batch(
    emulator: RunningEmulator, key: str, jobs: list[EmoJob], out: Path, speed: float, window: int
) -> int:
    async with (
        _client(emulator, key, speed) as client,
        Batch(client, out_dir=out, window=window, options=_options(speed, window)) as batch,
    ):
        return sum([r.status == "succeeded" async for r in batch.run(jobs)])


async def _sdk_wait(client: EmoClient, task_id: str, out: Path, speed: float) -> bool:
    polls = 0
    while True:
        delay = SDK_SCHEDULE[polls] if polls < len(SDK_SCHEDULE) else 5
        await anyio.sleep(delay / speed)
        polls += 1
        task = await client.get_task(task_id)
        if task.status is TaskStatus.SUCCEEDED and task.video_url:
            await client.download(task.video_url, out / f"{task_id}.mp4")
            return True
        if task.is_terminal:
            return False


async def _run_sdk_style(
    emulator: RunningEmulator, key: str, jobs: list[EmoJob], out: Path, speed: float
) -> int:
    done = 0
    async with _client(emulator, key, speed) as client:
        task_ids = []
        for job in jobs:
            image = await client.resolve_input(job.image, model=Model.EMO_DETECT)
            detection = await client.detect_emo(image)
            assert detection.face_bbox is not None
            assert detection.ext_bbox is not None
            submitted = await client.submit_emo(
                await client.resolve_input(job.image, model=Model.EMO),
                await client.resolve_input(job.audio, model=Model.EMO),
                face_bbox=detection.face_bbox,
                ext_bbox=detection.ext_bbox,
            )
            task_ids.append(submitted.task_id)

        async def wait(task_id: str) -> None:
            nonlocal done
            finished = await _sdk_wait(client, task_id, out, speed)
            done += finished  # not `done += await ...`: that reads `done` before waiting

        async with anyio.create_task_group() as tg:
            for task_id in task_ids:
                tg.start_soon(wait, task_id)
    return done


async def _arm(
    emulator: RunningEmulator, arm: str, jobs: list[EmoJob], speed: float, folder: Path
) -> ArmResult:
    key = f"sk-bench-{uuid.uuid4().hex[:12]}"
    out = folder / f"{arm}-{key}"
    started = time.monotonic()
    if arm == "sdk-style":
        videos = await _run_sdk_style(emulator, key, jobs, out, speed)
    else:
        videos = await _run_batch(emulator, key, jobs, out, speed, 1 if arm == "window=1" else 2)
    wall = time.monotonic() - started
    stats: dict[str, Any] = (await emulator.stats())["accounts"][account_label(key)]
    span = stats["slot_span_seconds"] or 1.0
    return ArmResult(
        utilisation=stats["slot_busy_seconds"] / span,
        queries_per_job=stats["routes"]["task_get"]["requests"] / len(jobs),
        throttled=sum(route["throttled"] for route in stats["routes"].values()),
        submissions=stats["submissions"],
        wall=wall,
        videos=videos,
    )


def _jobs(folder: Path, count: int, seconds: float) -> list[EmoJob]:
    sounds = [make_speech(folder / f"s{i}.wav", seconds=seconds + i, seed=i) for i in range(2)]
    images = [
        make_portrait(folder / f"p{i}.png", width=480, height=640, seed=i) for i in range(count)
    ]
    return [
        EmoJob(image=images[i], audio=sounds[i % 2], output=f"v{i}.mp4", label=f"job {i}")
        for i in range(count)
    ]


def _median(results: list[ArmResult], field: str) -> float:
    return statistics.median(float(getattr(r, field)) for r in results)


async def main(args: argparse.Namespace) -> None:
    arms = ("emoclient", "window=1", "sdk-style")
    config = EmulatorConfig(speed=args.speed, render=False, rate_limits=_scaled_limits(args.speed))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jobs = _jobs(folder, args.jobs, args.seconds)
        results: dict[str, list[ArmResult]] = {arm: [] for arm in arms}
        async with serve(config) as emulator:
            for _ in range(args.repeat):
                for arm in arms:
                    results[arm].append(await _arm(emulator, arm, jobs, args.speed, folder))
    _print(results, args)


def _scaled_limits(speed: float) -> dict[str, int]:
    base = {"submit": 5, "query": 20, "detect": 5, "upload_policy": 100}
    return {name: round(rate * speed) for name, rate in base.items()}


def _print(results: dict[str, list[ArmResult]], args: argparse.Namespace) -> None:
    print(
        f"{args.jobs} EMO jobs, {args.seconds:.0f}-{args.seconds + 1:.0f} s clips, "
        f"speed {args.speed:g}x, medians of {args.repeat} runs"
    )
    header = f"{'arm':<11}{'videos':>7}{'slot busy':>10}{'queries/job':>12}"
    print(header + f"{'429s':>6}{'submits':>8}{'wall s':>8}{'service min':>12}")
    for arm, runs in results.items():
        wall = _median(runs, "wall")
        print(
            f"{arm:<11}{_median(runs, 'videos'):>7.0f}{_median(runs, 'utilisation'):>10.1%}"
            f"{_median(runs, 'queries_per_job'):>12.1f}{_median(runs, 'throttled'):>6.0f}"
            f"{_median(runs, 'submissions'):>8.0f}{wall:>8.1f}{wall * args.speed / 60:>12.1f}"
        )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=2.0, help="shortest clip length")
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    anyio.run(main, _parse())
