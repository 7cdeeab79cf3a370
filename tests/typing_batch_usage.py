"""Exercises the public batch API under ``mypy --strict``; never collected by pytest.

If a signature drifts, this file stops type-checking. It is not executed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from emoclient import (
    Batch,
    BatchEvent,
    BatchSummary,
    EmoClient,
    EmojiJob,
    EmoJob,
    JobDownloaded,
    JobFailed,
    JobResult,
    Plan,
    Problem,
    SchedulerOptions,
    plan_batch,
    preflight,
)


async def _jobs() -> AsyncIterator[EmoJob | EmojiJob]:
    yield EmoJob(image="a.png", audio=Path("b.wav"), style_level="calm", ratio="3:4")
    yield EmojiJob(image="https://example.invalid/a.png", driven_id="mengwa_kaixin", label="r 3")


async def _on_event(event: BatchEvent) -> None:
    if isinstance(event, JobDownloaded):
        size: int = event.size
        path: Path = event.path
        del size, path
    elif isinstance(event, JobFailed):
        code: str | None = event.code
        del code


async def typed_batch_usage() -> None:
    job = EmoJob(
        image="a.png", audio="b.wav", output="x.mp4", face_bbox=(1, 2, 3, 4), ext_bbox=(0, 0, 9, 9)
    )
    problems: list[Problem] = await preflight(job)
    plan: Plan = await plan_batch([job])
    cost: float = plan.estimated_cost_cny
    del problems, cost
    options = SchedulerOptions(queries_per_second=2.0)
    async with (
        EmoClient("sk-test") as client,
        Batch(client, out_dir=Path("out"), window=2, on_event=_on_event, options=options) as batch,
    ):
        async for result in batch.run(_jobs()):
            done: JobResult = result
            path: Path | None = done.path
            del path
        batch.stop()
        summary: BatchSummary = batch.summary
        counts: dict[str, int] = summary.counts
        del counts
