"""Waiting on many tasks at once: emoclient's wait() vs the official SDK's AioVideoSynthesis.wait.

Both arms wait on the same number of queued tasks of one account on the emulator (real
time runs ``--speed`` times faster inside it, so a realistic 50-second task takes a few real
seconds). The tasks are submitted through emoclient first so that submission throttling does
not muddy the comparison; each arm uses its own account so the emulator's statistics separate
them. Printed per arm, as medians over ``--repeat`` runs: waits that ended with the finished
task, waits that gave up on an error (the SDK returns the 429 instead of retrying), queries
spent per task, 429 answers, and wall time until every wait returned.

    python benchmarks/bench_polling.py --tasks 30 --speed 25 --repeat 3
    python benchmarks/bench_polling.py --quick     # 30 tasks at 100x, one run: about 30 s
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

import benchjson

from emoclient import EmoClient, EmoError
from emoclient.emulator import EmulatorConfig, RunningEmulator, account_label, serve
from emoclient.emulator.samples import portrait_bytes, speech_bytes


@dataclass
class ArmResult:
    finished: int
    gave_up: int
    queries: int
    throttled: int
    wall: float


async def _submit_tasks(emulator: RunningEmulator, key: str, count: int) -> list[str]:
    image = emulator.host_file(f"{uuid.uuid4().hex}.png", portrait_bytes(seed=1))
    audio = emulator.host_file(f"{uuid.uuid4().hex}.wav", speech_bytes(seconds=4.0))
    async with EmoClient(key, base_url=emulator.base_url) as client:
        face, ext = (await client.detect_emo(image)).boxes()
        submitted = await asyncio.gather(
            *(client.submit_emo(image, audio, face_bbox=face, ext_bbox=ext) for _ in range(count))
        )
    return [task.task_id for task in submitted]


def _route(stats: dict[str, Any], key: str) -> dict[str, int]:
    routes = stats["accounts"][account_label(key)]["routes"]
    route: dict[str, int] = routes.get("task_get", {"requests": 0, "throttled": 0})
    return route


async def _arm_emoclient(emulator: RunningEmulator, key: str, ids: list[str]) -> tuple[int, int]:
    async with EmoClient(key, base_url=emulator.base_url) as client:
        outcomes = await asyncio.gather(
            *(client.wait(task_id, timeout=3600) for task_id in ids), return_exceptions=True
        )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    for error in errors:
        if not isinstance(error, EmoError):
            raise error
    return len(ids) - len(errors), len(errors)


async def _arm_sdk(emulator: RunningEmulator, key: str, ids: list[str]) -> tuple[int, int]:
    import dashscope
    from dashscope.aigc.video_synthesis import AioVideoSynthesis

    dashscope.base_http_api_url = emulator.base_url
    responses = await asyncio.gather(*(AioVideoSynthesis.wait(t, api_key=key) for t in ids))
    finished = sum(
        1 for r in responses if r.status_code == 200 and r.output.task_status == "SUCCEEDED"
    )
    return finished, len(ids) - finished


async def _run_arm(name: str, emulator: RunningEmulator, tasks: int) -> ArmResult:
    key = f"sk-bench-{name}-{uuid.uuid4().hex[:8]}"
    ids = await _submit_tasks(emulator, key, tasks)
    before = _route(await emulator.stats(), key)
    started = time.perf_counter()
    arm = _arm_emoclient if name == "emoclient" else _arm_sdk
    finished, gave_up = await arm(emulator, key, ids)
    wall = time.perf_counter() - started
    after = _route(await emulator.stats(), key)
    return ArmResult(
        finished=finished,
        gave_up=gave_up,
        queries=after["requests"] - before["requests"],
        throttled=after["throttled"] - before["throttled"],
        wall=wall,
    )


def _median(results: list[ArmResult], field: str) -> float:
    return statistics.median(float(getattr(r, field)) for r in results)


async def main(args: argparse.Namespace) -> None:
    config = EmulatorConfig(speed=args.speed, render=False)
    results: dict[str, list[ArmResult]] = {"sdk": [], "emoclient": []}
    async with serve(config) as emulator:
        for _ in range(args.repeat):
            for name in results:
                results[name].append(await _run_arm(name, emulator, args.tasks))
    title = (
        f"{args.tasks} concurrent waits on one account, emulator speed {args.speed:g}x, "
        f"medians of {args.repeat} runs"
    )
    columns = ["arm", "finished", "gave up", "queries/task", "429s", "wall s"]
    rows = [
        [
            name,
            round(_median(runs, "finished")),
            round(_median(runs, "gave_up")),
            round(_median(runs, "queries") / args.tasks, 1),
            round(_median(runs, "throttled")),
            round(_median(runs, "wall"), 1),
        ]
        for name, runs in results.items()
    ]
    benchjson.emit(
        args.json,
        benchmark="polling",
        title="Waiting on many tasks: emoclient's wait() vs the SDK's AioVideoSynthesis.wait",
        tables=[benchjson.table(title, columns, rows)],
        notes=["sdk = dashscope's AioVideoSynthesis.wait in real time (its 1-5 s schedule)"],
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    benchjson.add_arguments(parser, "one run at 100x")
    parser.add_argument("--tasks", type=int, default=30)
    parser.add_argument("--speed", type=float, help="emulator speed (default 25; quick 100)")
    parser.add_argument("--repeat", type=int, help="runs (default 3; quick 1)")
    args = parser.parse_args()
    args.speed = args.speed or (100.0 if args.quick else 25.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    return args


if __name__ == "__main__":
    asyncio.run(main(_parse()))
