"""The CLI flags' value types: each refuses a bad value with argparse's usage error (exit
status 2) naming the flag, in the words of the library's validator (`emoclient._validate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emoclient._validate import check_folder, check_seconds

__all__ = ["file_path", "folder", "positive_int", "seconds"]


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds (not 0, a negative number, nan or inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, not {text!r}") from None
    try:
        return check_seconds("the value", value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, not {text!r}"
        ) from None


def folder(text: str) -> Path:
    """A folder's path; an empty one is refused (``Path("")`` would be the current folder)."""
    try:
        return Path(check_folder("the folder", text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def file_path(text: str) -> Path:
    """A file's path; an empty one is refused."""
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a path; give a file's path")
    return Path(text)
