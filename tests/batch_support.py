"""Shared helpers of the batch tests (not a test module)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import anyio
from client_support import new_key

from emoclient._batch import Batch, JobHandle, JobResult, JobState
from emoclient._batch.jobs import EmojiJob, EmoJob, Job
from emoclient._batch.options import SchedulerOptions
from emoclient._cli._common import BatchOptions
from emoclient._retry import RetryPolicy
from emoclient.emulator import RunningEmulator
from emoclient.emulator.samples import make_portrait, make_speech

#: Tight polling for the emulator's fast clock, where a task lasts a fraction of a second.
FAST_OPTIONS: dict[str, Any] = {
    "poll_min": 0.01,
    "queries_per_second": 15.0,
    "pending_poll": 2.0,
    "retry": RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.1),
}


def options(**overrides: Any) -> SchedulerOptions:
    """Scheduler options for tests on the fast emulator."""
    return SchedulerOptions(**{**FAST_OPTIONS, **overrides})


def make_inputs(folder: Path, *, portraits: int, audios: int = 2) -> tuple[list[Path], list[Path]]:
    """Small distinct portraits and short speech files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        make_portrait(folder / f"p{i}.png", width=480, height=640, seed=i) for i in range(portraits)
    ]
    sounds = [
        make_speech(folder / f"s{i}.wav", seconds=1.0 + i * 0.5, seed=i) for i in range(audios)
    ]
    return images, sounds


def emo_jobs(images: list[Path], sounds: list[Path], count: int) -> list[Job]:
    """``count`` EMO jobs cycling through the inputs, labelled ``row N``, own outputs."""
    return [
        EmoJob(
            image=images[i % len(images)],
            audio=sounds[i % len(sounds)],
            label=f"row {i + 2}",
            output=f"video-{i + 2}.mp4",
        )
        for i in range(count)
    ]


def emoji_job(image: Path, label: str, driven_id: str = "dagong_weixiao") -> EmojiJob:
    """One Emoji job."""
    return EmojiJob(image=image, driven_id=driven_id, label=label)


async def collect(batch: Batch, jobs: list[Job]) -> list[JobResult]:
    """Run ``jobs`` to the end and return the results."""
    return [result async for result in batch.run(jobs)]


def label_jobs(folder: Path, count: int) -> list[EmoJob]:
    """``count`` EMO jobs of distinct portraits and one voice, labelled ``job N``."""
    images, sounds = make_inputs(folder, portraits=count, audios=1)
    return [
        EmoJob(image=image, audio=sounds[0], label=f"job {n}") for n, image in enumerate(images)
    ]


async def until_state(handle: JobHandle, *states: JobState, deadline: float = 20.0) -> None:
    """Follow ``handle``'s events until its state is one of ``states``."""
    with anyio.fail_after(deadline):  # a deadline, not a synchronisation
        async for _ in handle.events():
            if handle.state in states:
                return
        assert handle.state in states


def cli_options(manifest: Path, out: Path, emulator: RunningEmulator, **extra: Any) -> BatchOptions:
    """``emoclient batch``'s options for a run on ``emulator`` with an account of its own,
    JSON events, and both streams captured (``StringIO``)."""
    return BatchOptions(
        manifest=manifest,
        out=out,
        json=True,
        api_key=new_key(),
        base_url=emulator.base_url,
        store="memory",
        err=io.StringIO(),
        out_stream=io.StringIO(),
        **extra,
    )


def total_submissions(stats: dict[str, Any]) -> int:
    """Submissions over every account of an emulator's stats."""
    return sum(account["submissions"] for account in stats["accounts"].values())
