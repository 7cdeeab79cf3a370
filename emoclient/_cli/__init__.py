"""The ``emoclient`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

# Each module exposes ``register(subparsers)``, which adds its sub-command(s) and sets
# ``func`` (taking the parsed namespace, returning an exit code) as the parser default.
# Building the parser imports only argparse-level code (no aiohttp, no pydantic): each
# command loads the client when it runs, so that ``emoclient --help`` stays fast and a broken
# optional dependency only breaks the command that needs it.
_COMMAND_MODULES = (
    "emoclient._cli._demo",
    "emoclient._cli._batch",
    "emoclient._cli._calls",
    "emoclient._cli._emulator",
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, off) or the
    help text names it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


class _Version(argparse.Action):
    """``--version``, reading the installed version only when asked (importlib.metadata
    alone costs more than the whole parser)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from emoclient import __version__

        print(f"emoclient {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="emoclient",
        description="Asyncio client, batch runner and local emulator for DashScope EMO/Emoji.",
        epilog=(
            "The API key comes from DASHSCOPE_API_KEY (export DASHSCOPE_API_KEY=sk-...), the "
            "service's address from DASHSCOPE_HTTP_BASE_URL. Run `emoclient COMMAND --help` "
            "for a command's options."
        ),
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help=(
            "log what the library does to stderr: -v retries, waits and resumes (as "
            "EMOCLIENT_LOG=info), -vv every request and answer (EMOCLIENT_LOG=debug); "
            "never the API key (default: off)"
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if args.verbose:
        import logging

        from emoclient._log import log_to_stderr

        log_to_stderr(logging.DEBUG if args.verbose > 1 else logging.INFO)
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
