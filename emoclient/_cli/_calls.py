"""Single-call commands: detect, submit, status, wait, cancel, download, upload.

Each prints one JSON object on stdout. Errors print ``{"error": ..., "message": ...}`` on
stderr and exit 1. Connection settings come from ``DASHSCOPE_API_KEY`` and
``DASHSCOPE_HTTP_BASE_URL`` (or ``--base-url``).
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emoclient._cli._args import seconds
from emoclient._enums import DRIVEN_IDS, Model, Ratio, StyleLevel

if TYPE_CHECKING:
    from emoclient._client import EmoClient

__all__ = ["register"]

Action = Callable[["EmoClient", argparse.Namespace], Awaitable[Any]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the single-call sub-commands."""
    _add_detect(subparsers)
    _add_submit(subparsers)
    for name, helptext, action in (
        ("status", "print a task's state", _status),
        ("wait", "wait until a task finishes and print it", _wait),
        ("cancel", "cancel a PENDING task", _cancel),
    ):
        p = _parser(subparsers, name, helptext, action)
        p.add_argument("task_id", metavar="TASK_ID")
        if name == "wait":
            p.add_argument("--timeout", type=seconds, default=1800.0, help="seconds")
            p.add_argument(
                "--poll-interval", type=seconds, default=3.0, help="first poll gap, seconds"
            )
    p = _parser(subparsers, "download", "save a result video atomically", _download)
    p.add_argument("url", metavar="URL")
    p.add_argument("path", type=Path, metavar="PATH")
    p = _parser(subparsers, "upload", "put a local file into temporary storage (48 h)", _upload)
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--model", required=True, choices=[m.value for m in Model])


def _parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    helptext: str,
    action: Action,
) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(name, help=helptext, description=helptext)
    parser.add_argument(
        "--base-url", default=None, help="the service's address (default: $DASHSCOPE_HTTP_BASE_URL)"
    )
    parser.add_argument("--workspace", default=None, help="X-DashScope-WorkSpace id")
    parser.set_defaults(func=lambda args: _run(action, args))
    return parser


def _add_detect(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _parser(subparsers, "detect", "check a portrait with emo-detect or emoji-detect", _detect)
    p.add_argument("image", metavar="IMAGE", help="local path or URL")
    p.add_argument("--model", choices=["emo", "emoji"], default="emo", help="which detector")
    p.add_argument(
        "--ratio", choices=[r.value for r in Ratio], default="1:1", help="emo: the video's frame"
    )


def _add_submit(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _parser(subparsers, "submit", "submit one task (detects first if no boxes)", _submit)
    p.epilog = "TEMPLATE, the Emoji expression template, is one of: " + ", ".join(DRIVEN_IDS)
    p.add_argument("model", choices=["emo", "emoji"])
    p.add_argument("image", metavar="IMAGE", help="local path or URL")
    p.add_argument("audio", metavar="AUDIO", nargs="?", help="emo: local path or URL")
    p.add_argument(
        "--driven-id",
        type=_template,
        metavar="TEMPLATE",
        help="emoji: the expression template (listed below)",
    )
    p.add_argument(
        "--style-level",
        choices=[s.value for s in StyleLevel],
        default="normal",
        help="emo: how strongly the portrait moves",
    )
    p.add_argument(
        "--ratio", choices=[r.value for r in Ratio], default="1:1", help="emo: the video's frame"
    )
    p.add_argument("--face-bbox", type=_bbox, help="x1,y1,x2,y2 (skips detection with --ext-bbox)")
    p.add_argument("--ext-bbox", type=_bbox, help="x1,y1,x2,y2")


def _template(text: str) -> str:
    if text in DRIVEN_IDS:
        return text
    close = difflib.get_close_matches(text, DRIVEN_IDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else " (see the list below, under --help)"
    raise argparse.ArgumentTypeError(f"{text!r} is not one of the 20 Emoji templates{hint}")


def _bbox(text: str) -> list[int]:
    from emoclient._models import parse_bbox

    try:
        return list(parse_bbox(text, name="box"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run(action: Action, args: argparse.Namespace) -> int:
    import anyio

    from emoclient._client import EmoClient
    from emoclient._exceptions import EmoError, MissingAPIKeyError

    async def main() -> Any:
        async with EmoClient(base_url=args.base_url, workspace=args.workspace) as client:
            return await action(client, args)

    try:
        result = anyio.run(main)
    except MissingAPIKeyError:
        # The Python API's message says EmoClient(api_key=...); a shell user exports it.
        message = (
            "No DashScope API key: export DASHSCOPE_API_KEY=sk-... in the shell "
            "(a Beijing-region key)."
        )
        print(json.dumps({"error": "MissingAPIKeyError", "message": message}), file=sys.stderr)
        return 1
    except (EmoError, ValueError) as exc:
        error = {"error": type(exc).__name__, "message": str(exc)}
        print(json.dumps(error), file=sys.stderr)
        return 1
    print(json.dumps(_jsonable(result), indent=2))
    return 0


def _jsonable(result: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(result, BaseModel):
        return result.model_dump(mode="json")
    if isinstance(result, Path):
        return {"path": str(result)}
    return result


async def _detect(client: EmoClient, args: argparse.Namespace) -> Any:
    if args.model == "emoji":
        url = await client.resolve_input(args.image, model=Model.EMOJI_DETECT)
        return await client.detect_emoji(url)
    url = await client.resolve_input(args.image, model=Model.EMO_DETECT)
    return await client.detect_emo(url, ratio=args.ratio)


async def _boxes(client: EmoClient, args: argparse.Namespace) -> tuple[list[int], list[int]]:
    if args.face_bbox and args.ext_bbox:
        return args.face_bbox, args.ext_bbox
    detection = await _detect(client, args)
    face, ext = detection.boxes(image=args.image)  # DetectionFailedError when not passed
    return list(face), list(ext)


async def _submit(client: EmoClient, args: argparse.Namespace) -> Any:
    # Checked before detecting: a detection is billed even when the command then stops.
    if args.model == "emoji" and not args.driven_id:
        raise ValueError("submit emoji needs --driven-id (one of the 20 templates)")
    if args.model == "emo" and not args.audio:
        raise ValueError("submit emo needs AUDIO (a wav/mp3 path or URL)")
    face, ext = await _boxes(client, args)
    if args.model == "emoji":
        image = await client.resolve_input(args.image, model=Model.EMOJI)
        return await client.submit_emoji(
            image, driven_id=args.driven_id, face_bbox=face, ext_bbox=ext
        )
    image = await client.resolve_input(args.image, model=Model.EMO)
    audio = await client.resolve_input(args.audio, model=Model.EMO)
    return await client.submit_emo(
        image, audio, face_bbox=face, ext_bbox=ext, style_level=args.style_level
    )


async def _status(client: EmoClient, args: argparse.Namespace) -> Any:
    return await client.get_task(args.task_id)


async def _wait(client: EmoClient, args: argparse.Namespace) -> Any:
    return await client.wait(args.task_id, timeout=args.timeout, poll_interval=args.poll_interval)


async def _cancel(client: EmoClient, args: argparse.Namespace) -> Any:
    await client.cancel(args.task_id)
    return {"task_id": args.task_id, "canceled": True}


async def _download(client: EmoClient, args: argparse.Namespace) -> Any:
    return await client.download(args.url, args.path)


async def _upload(client: EmoClient, args: argparse.Namespace) -> Any:
    return await client.upload(args.path, model=args.model)
