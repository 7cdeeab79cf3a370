"""``emoclient demo``: a small mixed batch rendered on the built-in emulator.

No key and no network: the emulator runs in this process on 127.0.0.1 with a fast clock,
the portraits and the speech are drawn procedurally, and the batch goes through exactly the
code path of ``emoclient batch`` (manifest, preflight, upload, detect, submit, poll,
download), with its progress bar, into ``./emoclient-demo/``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from emoclient._cli._args import folder
from emoclient._cli._common import BatchOptions, command_name, expected_failure
from emoclient._enums import DRIVEN_IDS

__all__ = ["register"]

DEMO_KEY = "sk-emoclient-demo"
# Virtual seconds per real second: a task of a few minutes of service time takes about a
# second, so that rendering the MP4 files, not waiting, is what the demo spends time on.
DEMO_SPEED = 60.0
_JOURNAL = "emoclient-journal.sqlite3"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="render a small batch on the built-in emulator (no key, no network)",
        description=(
            "Start the emulator in this process, draw sample portraits and speech-like audio, "
            "and render a small mixed batch of EMO and Emoji videos with the batch runner."
        ),
    )
    parser.add_argument(
        "--out",
        type=folder,
        default=Path("emoclient-demo"),
        metavar="DIR",
        help="demo folder",
    )
    parser.add_argument(
        "--jobs",
        type=_job_mix,
        default=_Mix(emo=6, emoji=3),
        metavar="EMO[,EMOJI]",
        help="how many EMO and Emoji videos to render (default: 6,3; one EMO video is 3:4)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    parser.set_defaults(func=main)


@dataclass(frozen=True, slots=True)
class _Mix:
    emo: int
    emoji: int


def _job_mix(text: str) -> _Mix:
    try:
        numbers = [int(part) for part in text.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or min(numbers) < 0 or sum(numbers) < 1:
        raise argparse.ArgumentTypeError(f"expected EMO or EMO,EMOJI counts like 6,3, not {text!r}")
    return _Mix(emo=numbers[0], emoji=numbers[1] if len(numbers) == 2 else 0)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``emoclient demo``."""
    missing = _missing_extra()
    if missing:
        print(
            f"emoclient demo: the emulator needs {missing}, which is not installed. Install the "
            "emulator extra: pip install 'emoclient[emulator]' (or run `make demo`).",
            file=sys.stderr,
        )
        return 2
    import anyio

    try:
        return anyio.run(_demo, args.out.resolve(), args.jobs, args.json)
    except Exception as exc:
        cause = expected_failure(exc)
        if cause is None:
            raise
        print(f"emoclient demo: {cause}; choose another --out folder.", file=sys.stderr)
        return 1


def _missing_extra() -> str | None:
    for module, name in (("av", "PyAV"), ("PIL", "Pillow"), ("numpy", "numpy")):
        try:
            __import__(module)
        except ImportError:
            return name
    return None


async def _demo(out: Path, mix: _Mix, json_events: bool) -> int:
    import anyio.to_thread

    from emoclient._cli._run import run_batch
    from emoclient.emulator import EmulatorConfig, serve

    print(f"emoclient demo: drawing sample inputs into {out / 'inputs'} ...", file=sys.stderr)
    manifest = await anyio.to_thread.run_sync(_prepare, out, mix)
    config = EmulatorConfig(speed=DEMO_SPEED, api_keys=frozenset({DEMO_KEY}))
    async with serve(config) as emulator:
        print(f"emoclient demo: emulator listening at {emulator.base_url}", file=sys.stderr)
        options = BatchOptions(
            manifest=manifest,
            out=out / "videos",
            json=json_events,
            api_key=DEMO_KEY,
            base_url=emulator.base_url,
        )
        code = await run_batch(options)
    await anyio.to_thread.run_sync(_print_videos, out, manifest)
    return code


def _print_videos(out: Path, manifest: Path) -> None:
    videos = sorted((out / "videos").glob("*.mp4"))
    print(f"\n{len(videos)} video(s) in {out / 'videos'}:", file=sys.stderr)
    for video in videos:
        print(f"  {video.name}  ({video.stat().st_size // 1024} KiB)", file=sys.stderr)
    batch = BatchOptions(manifest=manifest, out=out / "videos").command()
    lines = [
        f"The inputs and the manifest are in {out}.",
        "Run your own batch against DashScope with:",
        "  export DASHSCOPE_API_KEY=sk-...",
        f"  {batch}",
    ]
    if not batch.startswith("emoclient "):
        activate = Path(command_name()).parent / "activate"
        lines.append(f"(`emoclient` is not on your PATH; `source {activate}` puts it there.)")
    print("\n".join(lines), file=sys.stderr)


def _prepare(out: Path, mix: _Mix) -> Path:
    """Draw the inputs, write ``manifest.csv``, clear videos of an earlier demo run."""
    from emoclient.emulator.samples import make_portrait, make_speech

    inputs = out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    videos = out / "videos"
    videos.mkdir(exist_ok=True)
    # Every run renders afresh: the emulator that knew the earlier run's tasks is gone.
    for stale in [*videos.glob("*.mp4"), *videos.glob(f"{_JOURNAL}*")]:
        stale.unlink()
    rows = ["image,audio,driven_id,style_level,ratio,output"]
    styles = ("normal", "calm", "active")
    for i in range(mix.emo):
        portrait = make_portrait(inputs / f"portrait-{i + 1}.png", seed=i + 1)
        speech = make_speech(inputs / f"speech-{i + 1}.wav", seconds=2.0 + (i % 3), seed=i + 1)
        ratio = "3:4" if i == mix.emo - 1 and mix.emo > 1 else "1:1"
        name = f"emo-{i + 1}-{ratio.replace(':', 'x')}.mp4"
        rel = (portrait.relative_to(out), speech.relative_to(out))
        rows.append(f"{rel[0]},{rel[1]},,{styles[i % 3]},{ratio},{name}")
    for i in range(mix.emoji):
        portrait = make_portrait(inputs / f"emoji-portrait-{i + 1}.png", seed=100 + i)
        driven_id = DRIVEN_IDS[(i * 7) % len(DRIVEN_IDS)]
        rows.append(f"{portrait.relative_to(out)},,{driven_id},,,emoji-{i + 1}-{driven_id}.mp4")
    manifest = out / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return manifest
