"""Stop a batch part-way, then run it again: it picks up where it stopped, paying nothing twice.

    python examples/cancel_and_resume.py

The first run stops once its first video is saved, as Ctrl-C stops ``emoclient batch``: no
new submits, a task still PENDING at the service is cancelled (not billed), a RUNNING one
is billed anyway, so it is left to finish. The second run of the same jobs into the same
folder reads the batch's journal: saved videos are kept as they are, a task left running is
fetched, and only the rest are submitted. It draws its sample inputs itself (needs the
``emulator`` extra) and reads DASHSCOPE_API_KEY and DASHSCOPE_HTTP_BASE_URL.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from emoclient import Batch, BatchEvent, EmoClient, EmoJob, JobSubmitted

OUT = Path("cancel-and-resume")


async def run(jobs: list[EmoJob], *, stop_after: int | None = None) -> None:
    submitted: list[str] = []  # tasks created at the service in this run: what it pays for

    def count(event: BatchEvent) -> None:
        if isinstance(event, JobSubmitted):
            submitted.append(event.label)

    async with (
        EmoClient() as client,
        Batch(client, out_dir=OUT / "videos", on_event=count) as batch,
    ):
        async for result in batch.run(jobs):
            print(f"  {result.job.label}: {result.status} {result.error or ''}")
            if stop_after is not None and batch.summary.counts.get("succeeded") == stop_after:
                batch.stop()  # what Ctrl-C does in `emoclient batch`
    print(f"  {batch.summary.counts}; submitted in this run: {sorted(submitted)}")
    if batch.summary.interrupted:
        print(f"  {batch.summary.interrupted} task(s) left running: a rerun fetches them")


def sample_jobs() -> list[EmoJob]:
    from emoclient.emulator.samples import make_portrait, make_speech

    inputs = OUT / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    voice = make_speech(inputs / "voice.wav", seconds=2.0)
    return [
        EmoJob(image=make_portrait(inputs / f"p{n}.png", seed=n), audio=voice, label=f"video {n}")
        for n in range(1, 6)
    ]


async def main() -> None:
    jobs = sample_jobs()
    print("First run, stopped after the first video:")
    await run(jobs, stop_after=1)
    print("Second run, the same jobs into the same folder:")
    await run(jobs)
    print(f"Videos: {sorted(p.name for p in (OUT / 'videos').glob('*.mp4'))}")


if __name__ == "__main__":
    anyio.run(main)
