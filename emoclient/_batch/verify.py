"""A downloaded video checked against its job: duration, and frame size for the ratio.

A task's video must match the job that paid for it. After a lost submit answer was
reconciled, this is the last line of defence against delivering another job's video: an
EMO video lasts as long as its audio, and every video has the frame size of its ratio. Only
the MP4 boxes needed are read (``mvhd`` for the duration, ``tkhd`` for the size), never the
media data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["Expected", "VideoInfo", "mismatch", "probe_mp4"]

# The service's output frames by ratio (API.md 1.2, 1.4).
FRAME_SIZES = {"1:1": (512, 512), "3:4": (512, 704)}
# An EMO video may be a little longer or shorter than its audio (frame rounding).
_TOLERANCE = 0.5
_MOOV_CAP = 64 * 1024 * 1024


class NotAnMP4Error(ValueError):
    """The file is not an MP4 with a movie header."""


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What an MP4's headers say: duration in seconds and the video track's frame size."""

    duration: float
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Expected:
    """What a job's video must be: its frame size, and its duration when known exactly."""

    ratio: str
    seconds: float | None


def probe_mp4(path: Path) -> VideoInfo:
    """Read the duration and frame size of the MP4 at ``path`` (blocking; run in a thread)."""
    with path.open("rb") as stream:
        moov = _find_box(stream, b"moov")
    if moov is None:
        raise NotAnMP4Error(f"{path} has no MP4 movie header (moov)")
    duration = None
    size = None
    for kind, body in _boxes(moov):
        if kind == b"mvhd":
            duration = _mvhd_duration(body)
        elif kind == b"trak" and size is None:
            size = _video_size(body)
    if duration is None or size is None:
        raise NotAnMP4Error(f"{path} has no movie duration or no video track")
    return VideoInfo(duration, *size)


def mismatch(info: VideoInfo, expected: Expected) -> str | None:
    """Why the video does not belong to the job, or None when it matches."""
    frame = FRAME_SIZES.get(expected.ratio)
    if frame is not None and (info.width, info.height) != frame:
        return (
            f"its frames are {info.width}x{info.height}, but a {expected.ratio} video is "
            f"{frame[0]}x{frame[1]}"
        )
    seconds = expected.seconds
    if seconds is not None and abs(info.duration - seconds) > max(_TOLERANCE, 0.05 * seconds):
        return f"it lasts {info.duration:.1f} s, but the job's audio lasts {seconds:.1f} s"
    return None


def _find_box(stream: BinaryIO, kind: bytes) -> bytes | None:
    """The body of the first top-level box ``kind``, seeking past the others."""
    while header := stream.read(8):
        if len(header) < 8:
            return None
        size, found = struct.unpack(">I4s", header)
        skip = 8
        if size == 1:
            large = stream.read(8)
            if len(large) < 8:
                return None
            size, skip = struct.unpack(">Q", large)[0], 16
        elif size == 0:  # the box runs to the end of the file
            return stream.read(_MOOV_CAP) if found == kind else None
        if size < skip:
            return None
        if found == kind:
            if size - skip > _MOOV_CAP:
                return None
            body = stream.read(size - skip)
            return body if len(body) == size - skip else None
        stream.seek(size - skip, 1)
    return None


def _boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    found = []
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        skip = 8
        if size == 1 and pos + 16 <= len(data):
            size, skip = struct.unpack_from(">Q", data, pos + 8)[0], 16
        if size < skip or pos + size > len(data):
            break
        found.append((kind, data[pos + skip : pos + size]))
        pos += size
    return found


def _mvhd_duration(body: bytes) -> float | None:
    if not body:
        return None
    version = body[0]
    if version == 1 and len(body) >= 32:
        timescale, duration = struct.unpack_from(">IQ", body, 20)
    elif len(body) >= 20:
        timescale, duration = struct.unpack_from(">II", body, 12)
    else:
        return None
    return duration / timescale if timescale else None


def _video_size(trak: bytes) -> tuple[int, int] | None:
    boxes = dict(_boxes(trak))
    tkhd, mdia = boxes.get(b"tkhd"), boxes.get(b"mdia")
    if tkhd is None or mdia is None:
        return None
    hdlr = dict(_boxes(mdia)).get(b"hdlr", b"")
    if hdlr[8:12] != b"vide":
        return None
    offset = 88 if tkhd[:1] == b"\x01" else 76  # width, height: 16.16 fixed point at the end
    if len(tkhd) < offset + 8:
        return None
    width, height = struct.unpack_from(">II", tkhd, offset)
    return width >> 16, height >> 16
