"""One validator for every value a person gives: video file names, seconds, counts, folders.

The jobs (``EmoJob``/``EmojiJob``), the manifest reader, the client and the CLI flags all
check through these functions, so a value is refused in the same words wherever it comes
from, and before anything is paid. Each raises ``ValueError`` (``TypeError`` for a value of
the wrong kind) with a message that names the value and says what to do. Pure, no I/O.
"""

from __future__ import annotations

import math
from pathlib import PurePosixPath

__all__ = [
    "MAX_OUTPUT_BYTES",
    "check_count",
    "check_folder",
    "check_optional_seconds",
    "check_output_name",
    "check_seconds",
]

#: File systems take names of up to 255 bytes, and a download's temporary file name is the
#: output's plus 19 (``.{name}.{12 hex}.part``).
MAX_OUTPUT_BYTES = 255 - 19

# Names Windows keeps for devices, with any extension: a video there could never be opened.
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10)}
)


def check_output_name(value: object) -> str:
    """``value`` as a video's file name inside the output folder; ``.mp4`` is added when it
    has no suffix. Refuses empty names, ``.``/``..``, folders (``/``, ``\\``), absolute
    paths, NULs and other control characters, other suffixes, reserved device names and
    names too long for a file system."""
    if not isinstance(value, str):
        raise TypeError(f"an output name is text (a file name such as 'alice.mp4'), not {value!r}")
    hint = "give a file name such as 'alice.mp4', or none for an automatic one"
    if not value.strip():
        raise ValueError(f"{value!r} is empty; {hint}")
    if "\0" in value:
        raise ValueError(f"{value!r} contains a NUL character; {hint}")
    if not value.isprintable():
        raise ValueError(f"{value!r} contains control characters (a line break, a tab); {hint}")
    if "/" in value or "\\" in value:
        raise ValueError(
            f"{value!r} names a folder or a path; give a file name without folders "
            "(the video goes into the output folder)"
        )
    if value in {".", ".."}:
        raise ValueError(f"{value!r} is a folder, not a file name; {hint}")
    if value != value.strip() or value.endswith("."):
        raise ValueError(f"{value!r} starts or ends with a space or ends with a dot; {hint}")
    name = PurePosixPath(value)
    if not name.suffix:
        value = f"{value}.mp4"
    elif name.suffix.lower() != ".mp4":
        raise ValueError(f"{value!r}: videos are MP4, end the name with .mp4")
    if value.split(".")[0].strip().lower() in _RESERVED:
        raise ValueError(f"{value!r} is a name reserved for a device (on Windows); choose another")
    size = len(value.encode())
    if size > MAX_OUTPUT_BYTES:
        raise ValueError(
            f"{value[:40]!r}... is {size} bytes long, over the {MAX_OUTPUT_BYTES} a video's "
            "file name may have; shorten it"
        )
    return value


def check_seconds(name: str, value: object, *, zero: bool = False) -> float:
    """``value`` as a positive (``zero=True``: or zero), finite number of seconds for the
    setting ``name``; negative numbers, NaN and infinity are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        kind = "zero or more" if zero else "a positive number of"
        raise ValueError(f"{name} must be {kind} seconds, not {value!r}")
    return float(value)


def check_optional_seconds(name: str, value: object) -> float | None:
    """`check_seconds`, letting ``None`` (the default) through."""
    return None if value is None else check_seconds(name, value)


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as a whole number of at least ``minimum`` for the setting ``name``."""
    if isinstance(value, float) and not isinstance(value, bool):
        if not value.is_integer():  # 1.5, nan, inf: a number, but not a count
            raise ValueError(f"{name} must be a whole number, not {value!r}")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {minimum} or more, not {value}")
    return value


def check_folder(name: str, value: object, *, example: str = "videos") -> str:
    """``value`` as a path for the setting ``name`` (a folder's, or a file's when ``example``
    names one): not empty, no NUL."""
    text = str(value) if value is not None else ""
    what = "folder" if "." not in PurePosixPath(example).name else "file"
    if not text.strip():
        raise ValueError(f"{name} is empty; give a {what}'s path (e.g. {example!r})")
    if "\0" in text:
        raise ValueError(f"{name} {text!r} contains a NUL character; give a {what}'s path")
    return text
