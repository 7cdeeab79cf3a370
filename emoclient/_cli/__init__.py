"""The ``emoclient`` command: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)``, which adds its sub-command(s) and sets
# ``func`` (taking the parsed namespace, returning an exit code) as the parser default.
# Imported lazily so that ``emoclient --help`` stays fast and a broken optional
# dependency only breaks the command that needs it.
_COMMAND_MODULES = (
    "emoclient._cli._demo",
    "emoclient._cli._batch",
    "emoclient._cli._calls",
    "emoclient._cli._emulator",
)


def build_parser() -> argparse.ArgumentParser:
    from emoclient import __version__

    parser = argparse.ArgumentParser(
        prog="emoclient",
        description="Asyncio client, batch runner and local emulator for DashScope EMO/Emoji.",
    )
    parser.add_argument("--version", action="version", version=f"emoclient {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
