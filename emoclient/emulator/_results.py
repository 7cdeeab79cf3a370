"""Signed result URLs and their bodies: expiring like OSS, with Range support for resuming."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from urllib.parse import quote

from ._state import Task

ACCESS_KEY_ID = "LTAI5tEmulatorResults"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
#: Bytes of placeholder video per output second when rendering is off.
PLACEHOLDER_BYTES_PER_SECOND = 16 * 1024


class ResultSigner:
    """Signs and checks result URLs with a per-instance secret (HMAC-SHA1, as OSS does)."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def sign(self, name: str, expires: int) -> str:
        """The ``Signature`` of object ``name`` expiring at epoch second ``expires``."""
        digest = hmac.new(self._secret, f"GET\n{expires}\n/{name}".encode(), hashlib.sha1)
        return base64.b64encode(digest.digest()).decode()

    def url(self, base: str, name: str, expires: int) -> str:
        """The full signed URL of object ``name`` under ``base``."""
        signature = quote(self.sign(name, expires), safe="")
        return (
            f"{base}/results/{name}?Expires={expires}"
            f"&OSSAccessKeyId={ACCESS_KEY_ID}&Signature={signature}"
        )

    def verify(self, name: str, expires: str, signature: str) -> bool:
        """Whether ``signature`` is this instance's signature of ``name`` and ``expires``."""
        if not expires.isdigit():
            return False
        return hmac.compare_digest(self.sign(name, int(expires)), signature)


def placeholder_video(task: Task) -> bytes:
    """Deterministic stand-in for a result when rendering is switched off: an MP4 whose
    headers are those of the real result (duration, frame size), followed by filler media
    data unique to the task."""
    seconds = task.inputs.output_seconds
    width, height = _FRAME_SIZES.get(task.inputs.video_ratio, (512, 512))
    head = _box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41") + _moov(seconds, width, height)
    size = max(1, round(seconds)) * PLACEHOLDER_BYTES_PER_SECOND
    seed = hashlib.sha256(task.task_id.encode()).digest()
    filler = (seed * (size // len(seed) + 1))[: max(0, size - len(head) - 8)]
    return head + _box(b"mdat", filler)


_FRAME_SIZES = {"1:1": (512, 512), "3:4": (512, 704)}
_MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _moov(seconds: float, width: int, height: int) -> bytes:
    millis = round(seconds * 1000)
    mvhd = (
        struct.pack(">I4I", 0, 0, 0, 1000, millis)
        + struct.pack(">IH10x", 0x10000, 0x100)
        + _MATRIX
        + bytes(24)
        + struct.pack(">I", 2)
    )
    tkhd = (
        struct.pack(">I5I8x", 3, 0, 0, 1, 0, millis)
        + struct.pack(">4H", 0, 0, 0, 0)
        + _MATRIX
        + struct.pack(">2I", width << 16, height << 16)
    )
    hdlr = struct.pack(">II4s12x", 0, 0, b"vide") + b"VideoHandler\x00"
    trak = _box(b"tkhd", tkhd) + _box(b"mdia", _box(b"hdlr", hdlr))
    return _box(b"moov", _box(b"mvhd", mvhd) + _box(b"trak", trak))


def parse_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """The inclusive byte range a ``Range`` header asks for.

    None means the whole body; False means the range cannot be satisfied (416).
    """
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # malformed or multi-range: serve everything, as OSS does
    first, last = match.groups()
    if not first:
        if not last or int(last) == 0:
            return False
        return (max(0, size - int(last)), size - 1)
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if start >= size or end < start:
        return False
    return (start, end)


def oss_error_xml(code: str, message: str, *, request_id: str) -> str:
    """An OSS-style XML error document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        f"  <Code>{code}</Code>\n"
        f"  <Message>{message}</Message>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        "  <HostId>dashscope-result-sh.oss-cn-shanghai.aliyuncs.com</HostId>\n"
        "</Error>\n"
    )
