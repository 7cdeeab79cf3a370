"""Local probing of portrait images and audio files, from their headers, in pure Python.

Used by preflight to reject an input before anything is paid for. Only headers are parsed
(no Pillow, no PyAV): image format and size for JPEG/PNG/BMP/WEBP, audio format and
duration for WAV (RIFF chunks) and MP3 (MPEG frame headers, Xing/Info and VBRI tags).
:func:`audio_length` does the same from only the first bytes of a file and its full size
(audio given as a URL, read with one ranged GET). All functions are synchronous and
CPU-bound; callers run them in a worker thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "AudioInfo",
    "ImageInfo",
    "MediaFormatError",
    "audio_length",
    "id3_size",
    "probe_audio",
    "probe_image",
]


class MediaFormatError(ValueError):
    """The bytes are not a readable image or audio file of a supported format."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """Format (``"jpeg"``, ``"png"``, ``"bmp"``, ``"webp"``) and pixel size of an image."""

    format: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """Format (``"wav"`` or ``"mp3"``) and duration in seconds of an audio file."""

    format: str
    duration: float


def probe_image(data: bytes) -> ImageInfo:
    """Return the format and size of a JPEG, PNG, BMP or WEBP image from its header."""
    try:
        return _probe_image(data)
    except (struct.error, IndexError, ZeroDivisionError) as exc:
        raise MediaFormatError(f"truncated or corrupt image header ({exc})") from exc


def _probe_image(data: bytes) -> ImageInfo:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _probe_png(data)
    if data.startswith(b"\xff\xd8"):
        return _probe_jpeg(data)
    if data.startswith(b"BM"):
        return _probe_bmp(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _probe_webp(data)
    raise MediaFormatError("not a JPEG, PNG, BMP or WEBP image")


def _probe_png(data: bytes) -> ImageInfo:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise MediaFormatError("truncated PNG header (no IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return _checked("png", width, height)


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD9)])


def _probe_jpeg(data: bytes) -> ImageInfo:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise MediaFormatError(f"corrupt JPEG: no marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return _checked("jpeg", width, height)
        pos += 2 + length
    raise MediaFormatError("truncated JPEG (no frame header found)")


def _probe_bmp(data: bytes) -> ImageInfo:
    if len(data) < 26:
        raise MediaFormatError("truncated BMP header")
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return _checked("bmp", abs(width), abs(height))  # negative height = top-down rows


def _probe_webp(data: bytes) -> ImageInfo:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return _checked("webp", width, height)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return _checked("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        (bits,) = struct.unpack("<I", data[21:25])
        return _checked("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    raise MediaFormatError("unsupported or truncated WEBP header")


def _checked(fmt: str, width: int, height: int) -> ImageInfo:
    if width <= 0 or height <= 0:
        raise MediaFormatError(f"{fmt.upper()} header gives an empty size {width}x{height}")
    return ImageInfo(fmt, width, height)


def probe_audio(data: bytes) -> AudioInfo:
    """Return the format (``"wav"`` or ``"mp3"``) and duration of an audio file."""
    try:
        return _probe_audio(data)
    except (struct.error, IndexError, ZeroDivisionError) as exc:
        raise MediaFormatError(f"truncated or corrupt audio header ({exc})") from exc


# Containers whose payload could contain MPEG-like sync bytes by chance.
_OTHER_AUDIO = {b"OggS": "OGG", b"fLaC": "FLAC", b"FORM": "AIFF", b"#!AM": "AMR"}


def _probe_audio(data: bytes) -> AudioInfo:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return AudioInfo("wav", _wav_duration(data))
    other = _OTHER_AUDIO.get(data[:4]) or ("MP4/M4A" if data[4:8] == b"ftyp" else None)
    if other is not None:
        raise MediaFormatError(f"an {other} file, not WAV or MP3")
    return AudioInfo("mp3", _mp3_duration(data))


def _wav_duration(data: bytes) -> float:
    byte_rate = 0
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = pos + 8
        if chunk_id == b"fmt " and size >= 16:
            (byte_rate,) = struct.unpack("<I", data[body + 8 : body + 12])
        elif chunk_id == b"data":
            if byte_rate <= 0:
                raise MediaFormatError("WAV data chunk before a valid fmt chunk")
            # Streaming writers leave the size at 0 or 0xFFFFFFFF: trust the file length.
            available = len(data) - body
            return (available if size in (0, 0xFFFFFFFF) else min(size, available)) / byte_rate
        pos = body + size + (size & 1)  # chunks are word-aligned
    raise MediaFormatError("WAV file without a data chunk")


_MP3_BITRATES = {
    (1, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (1, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (1, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (2, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (2, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (2, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {1: (44100, 48000, 32000), 2: (22050, 24000, 16000), 25: (11025, 12000, 8000)}


@dataclass(frozen=True, slots=True)
class _Frame:
    version: int  # 1, 2 or 25 (MPEG 2.5)
    layer: int
    sample_rate: int
    length: int
    samples: int
    mono: bool


def _parse_frame(data: bytes, pos: int) -> _Frame | None:
    if pos + 4 > len(data) or data[pos] != 0xFF or data[pos + 1] & 0xE0 != 0xE0:
        return None
    b1, b2, b3 = data[pos + 1], data[pos + 2], data[pos + 3]
    version = {0: 25, 2: 2, 3: 1}.get((b1 >> 3) & 3)
    layer = {1: 3, 2: 2, 3: 1}.get((b1 >> 1) & 3)
    bitrate_index, rate_index = b2 >> 4, (b2 >> 2) & 3
    if version is None or layer is None or bitrate_index in (0, 15) or rate_index == 3:
        return None
    bitrate = _MP3_BITRATES[(min(version, 2), layer)][bitrate_index] * 1000
    sample_rate = _MP3_RATES[version][rate_index]
    padding = (b2 >> 1) & 1
    if layer == 1:
        length, samples = (12 * bitrate // sample_rate + padding) * 4, 384
    elif layer == 3 and version != 1:
        length, samples = 72 * bitrate // sample_rate + padding, 576
    else:
        length, samples = 144 * bitrate // sample_rate + padding, 1152
    return _Frame(version, layer, sample_rate, length, samples, mono=(b3 >> 6) == 3)


def _skip_id3v2(data: bytes) -> int:
    pos = 0
    while data[pos : pos + 3] == b"ID3" and pos + 10 <= len(data):
        size = 0
        for byte in data[pos + 6 : pos + 10]:  # syncsafe integer: 7 bits per byte
            size = (size << 7) | (byte & 0x7F)
        pos += 10 + size + (10 if data[pos + 5] & 0x10 else 0)
    return pos


def _find_sync(data: bytes, pos: int) -> tuple[int, _Frame] | None:
    """Find the first frame at or after ``pos`` that is followed by another valid frame."""
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0:
            return None
        frame = _parse_frame(data, pos)
        if frame is not None:
            after = pos + frame.length
            if after >= len(data) or _parse_frame(data, after) is not None:
                return pos, frame
        pos += 1


def _tagged_frame_count(data: bytes, pos: int, frame: _Frame) -> int | None:
    """Frame count from a Xing/Info or VBRI header in the first frame, if there is one."""
    # The tag sits right after the side information, whose size depends on version and mode.
    side = {(True, True): 17, (True, False): 32, (False, True): 9, (False, False): 17}[
        (frame.version == 1, frame.mono)
    ]
    xing = pos + 4 + side
    if data[xing : xing + 4] in (b"Xing", b"Info"):
        (flags,) = struct.unpack(">I", data[xing + 4 : xing + 8])
        if flags & 1:
            return int(struct.unpack(">I", data[xing + 8 : xing + 12])[0])
    vbri = pos + 36
    if data[vbri : vbri + 4] == b"VBRI":
        return int(struct.unpack(">I", data[vbri + 14 : vbri + 18])[0])
    return None


def _first_frame(data: bytes, missing: str) -> tuple[int, _Frame, float | None]:
    """The first MPEG audio frame after the ID3v2 tags (its offset and header), and the
    length its Xing/VBRI tag states, if any; ``missing`` is the error when there is none."""
    found = _find_sync(data, _skip_id3v2(data))
    if found is None:
        raise MediaFormatError(missing)
    pos, first = found
    frames = _tagged_frame_count(data, pos, first)
    return pos, first, None if frames is None else frames * first.samples / first.sample_rate


def _mp3_duration(data: bytes) -> float:
    missing = "neither a WAV file nor an MP3 stream (no MPEG audio frames)"
    pos, first, tagged = _first_frame(data, missing)
    if tagged is not None:
        return tagged
    seconds = 0.0
    frame: _Frame | None = first
    while frame is not None:
        seconds += frame.samples / frame.sample_rate
        pos += frame.length
        frame = _parse_frame(data, pos)
        if frame is None and pos < len(data) - 128:
            # Junk between frames: resync unless the rest is a trailing tag.
            found = _find_sync(data, pos) if data[pos : pos + 3] != b"TAG" else None
            if found is not None:
                pos, frame = found
    return seconds


def id3_size(head: bytes) -> int:
    """Bytes of ID3v2 tags at the start of an MP3 (0 if none): its frames start there."""
    try:
        return _skip_id3v2(head)
    except IndexError:
        return 0


def audio_length(head: bytes, total: int | None) -> float:
    """Duration of a WAV or MP3 file of ``total`` bytes (None: unknown) from its first bytes.

    ``head`` starts at byte 0 of the file, or, for an MP3, at its first frame (after its
    ID3v2 tags; ``total`` then counts from there too). WAV: the data chunk's size over the
    byte rate (the file's size when the header leaves it open). MP3: a Xing/Info or VBRI
    frame count, else the file's size over the bit rate of the frames in ``head``.
    """
    if total is not None and total <= len(head):
        return probe_audio(head[:total]).duration
    try:
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav_length(head, total)
        return _mp3_length(head, total)
    except (struct.error, IndexError, ZeroDivisionError) as exc:
        raise MediaFormatError(f"truncated or corrupt audio header ({exc})") from exc


def _wav_length(head: bytes, total: int | None) -> float:
    byte_rate, pos = 0, 12
    while pos + 8 <= len(head):
        chunk_id = head[pos : pos + 4]
        (size,) = struct.unpack("<I", head[pos + 4 : pos + 8])
        if chunk_id == b"fmt " and size >= 16:
            (byte_rate,) = struct.unpack("<I", head[pos + 16 : pos + 20])
        elif chunk_id == b"data" and byte_rate > 0:
            if size not in (0, 0xFFFFFFFF):
                return float(size / byte_rate)
            if total is not None:
                return float((total - pos - 8) / byte_rate)
            break
        pos += 8 + size + (size & 1)
    raise MediaFormatError("no WAV data chunk with a known size in the first bytes")


def _mp3_length(head: bytes, total: int | None) -> float:
    pos, frame, tagged = _first_frame(head, "no MPEG audio frames in the first bytes")
    if tagged is not None:
        return tagged
    if total is None:
        raise MediaFormatError("an MP3 without a frame count, of unknown size")
    start, seconds = pos, 0.0
    current: _Frame | None = frame
    while current is not None and pos + current.length <= len(head):
        seconds += current.samples / current.sample_rate
        pos += current.length
        current = _parse_frame(head, pos)
    if seconds <= 0:
        raise MediaFormatError("no whole MPEG audio frame in the first bytes")
    return (total - start) * seconds / (pos - start)  # bytes over the frames' byte rate
