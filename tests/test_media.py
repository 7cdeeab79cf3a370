from __future__ import annotations

import contextlib
import io
import struct
import wave

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from emoclient._batch.probe import MediaFormatError, probe_audio, probe_image


def _image(fmt: str, size: tuple[int, int], **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 90, 60)).save(buffer, format=fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "name", "save"),
    [
        ("JPEG", "jpeg", {}),
        ("JPEG", "jpeg", {"progressive": True}),
        ("PNG", "png", {}),
        ("BMP", "bmp", {}),
        ("WEBP", "webp", {"lossless": False}),
        ("WEBP", "webp", {"lossless": True}),
    ],
)
def test_probe_image_reads_size_from_header(fmt: str, name: str, save: dict[str, object]) -> None:
    info = probe_image(_image(fmt, (401, 613), **save))
    assert (info.format, info.width, info.height) == (name, 401, 613)


def test_probe_image_reads_extended_webp() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (500, 420), (1, 2, 3, 100)).save(buffer, format="WEBP", exif=b"Exif\0\0")
    info = probe_image(buffer.getvalue())
    assert (info.width, info.height) == (500, 420)


@pytest.mark.parametrize(
    "data", [b"", b"GIF89a" + b"\0" * 20, b"\xff\xd8\xff\xe0\x00\x10JFIF", b"\x89PNG\r\n\x1a\n"]
)
def test_probe_image_rejects_unreadable(data: bytes) -> None:
    with pytest.raises(MediaFormatError):
        probe_image(data)


def _wav(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * channels * round(seconds * rate))
    return buffer.getvalue()


@pytest.mark.parametrize(("seconds", "rate", "channels"), [(1.5, 16000, 1), (3.25, 44100, 2)])
def test_probe_audio_wav_duration(seconds: float, rate: int, channels: int) -> None:
    info = probe_audio(_wav(seconds, rate, channels))
    assert info.format == "wav"
    assert info.duration == pytest.approx(seconds, abs=1e-3)


def test_probe_audio_wav_with_streaming_size() -> None:
    data = bytearray(_wav(2.0))
    data[40:44] = struct.pack("<I", 0xFFFFFFFF)  # the data chunk's size field
    assert probe_audio(bytes(data)).duration == pytest.approx(2.0, abs=1e-3)


def _mp3(seconds: float, rate: int, layout: str = "mono") -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout=layout)
        samples = round(seconds * rate)
        channels = 1 if layout == "mono" else 2
        tone = (8000 * np.sin(np.arange(samples) / 10)).astype("int16")
        # Packed s16 audio is one row of interleaved samples.
        packed = np.repeat(tone, channels).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(packed, format="s16", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("seconds", "rate", "layout"), [(2.0, 44100, "mono"), (4.0, 22050, "stereo")]
)
def test_probe_audio_mp3_duration(seconds: float, rate: int, layout: str) -> None:
    info = probe_audio(_mp3(seconds, rate, layout))
    assert info.format == "mp3"
    # Encoder delay and padding add up to about two frames.
    assert info.duration == pytest.approx(seconds, abs=0.12)


def test_probe_audio_mp3_without_tag_walks_frames() -> None:
    data = _mp3(3.0, 44100)
    start = data.find(b"Xing")
    if start < 0:
        start = data.find(b"Info")
    stripped = data.replace(data[start : start + 4], b"\0\0\0\0", 1) if start >= 0 else data
    assert probe_audio(stripped).duration == pytest.approx(3.0, abs=0.12)


@pytest.mark.parametrize("head", [b"OggS", b"fLaC", b"\0\0\0\x20ftypM4A "])
def test_probe_audio_rejects_other_containers(head: bytes) -> None:
    with pytest.raises(MediaFormatError, match="not WAV or MP3"):
        probe_audio(head + b"\xff\xfb\x90\x64" * 400)


_PREFIXES = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8",
    b"BM",
    b"RIFF\0\0\0\0WEBP",
    b"RIFF\0\0\0\0WAVE",
    b"ID3\x03\0\0\0\0\0\x05",
    b"\xff\xfb\x90\x64",
    b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0",
    b"\xff\xfb\x90\x64" + bytes(32) + b"Xing",
    b"\xff\xfb\x90\x64" + bytes(32) + b"VBRI",
    b"\xff\xd8\xff\xc0\x00\x11",
]


# No per-example deadline: on a loaded machine one slow example would fail the run as
# "unreliable timing" though the property holds.
@settings(deadline=None)
@given(prefix=st.sampled_from(_PREFIXES), rest=st.binary(max_size=300))
def test_probing_garbage_raises_only_media_format_error(prefix: bytes, rest: bytes) -> None:
    for probe in (probe_image, probe_audio):
        with contextlib.suppress(MediaFormatError):
            probe(prefix + rest)
