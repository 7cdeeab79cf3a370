"""A folder of portraits and one voice recording: a batch of talking-head (EMO) videos.

    python examples/folder_batch.py PORTRAITS_FOLDER VOICE.wav [OUT_FOLDER]

Every image in the folder gets a video in OUT_FOLDER (default ``folder-batch/videos``).
Without arguments it draws three sample portraits and a voice first (needs the ``emulator``
extra). Run it twice: the second run finds every video in the batch's journal and
submits nothing, so nothing is paid twice. It reads DASHSCOPE_API_KEY and
DASHSCOPE_HTTP_BASE_URL; try it on the emulator (``emoclient emulator --speed 50``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from emoclient import Batch, BatchEvent, EmoClient, EmoJob, JobFailed, JobSubmitted

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def show(event: BatchEvent) -> None:
    # A batch reports every step of every job; `emoclient batch` draws its bar from these.
    if isinstance(event, JobSubmitted):
        print(f"  {event.label}: submitted as task {event.task_id}")
    elif isinstance(event, JobFailed):
        print(f"  {event.label}: failed: {event.message}")


async def main(jobs: list[EmoJob], out: Path) -> int:
    async with EmoClient() as client, Batch(client, out_dir=out, on_event=show) as batch:
        # Results arrive as jobs end, not in the folder's order; one failure stops nothing.
        async for result in batch.run(jobs):
            print(f"{result.job.display_label}: {result.status} -> {result.path or result.error}")
    summary = batch.summary
    print(
        f"{summary.counts}; {summary.billed_seconds:.1f} s of video billed, "
        f"about CNY {summary.estimated_cost_cny:.2f}"
    )
    return 0 if summary.counts.get("succeeded", 0) == len(jobs) else 1


def sample_inputs(folder: Path) -> tuple[Path, Path]:
    from emoclient.emulator.samples import make_portrait, make_speech

    portraits = folder / "portraits"
    portraits.mkdir(parents=True, exist_ok=True)
    for seed in range(1, 4):
        make_portrait(portraits / f"person-{seed}.png", seed=seed)
    return portraits, make_speech(folder / "voice.wav", seconds=2.0)


if __name__ == "__main__":
    if len(sys.argv) >= 3:
        folder, voice = Path(sys.argv[1]), Path(sys.argv[2])
    else:
        folder, voice = sample_inputs(Path("folder-batch"))
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("folder-batch/videos")
    portraits = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    # The output name is the portrait's: person-1.png -> person-1.mp4.
    jobs = [EmoJob(image=p, audio=voice, output=f"{p.stem}.mp4", label=p.name) for p in portraits]
    sys.exit(anyio.run(main, jobs, out))
