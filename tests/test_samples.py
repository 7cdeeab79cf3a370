from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from emoclient.emulator.samples import FAIL_MARKER, make_portrait, make_speech


@pytest.mark.parametrize(
    ("fmt", "pil_format"), [("png", "PNG"), ("jpeg", "JPEG"), ("bmp", "BMP"), ("webp", "WEBP")]
)
def test_portrait_decodes_in_every_format_and_carries_the_fail_marker(
    tmp_path: Path, fmt: str, pil_format: str
) -> None:
    path = make_portrait(
        tmp_path / f"p.{fmt}", width=640, height=800, fmt=fmt, fail="InvalidFile.FacePose"
    )
    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        assert img.format == pil_format
        assert img.size == (640, 800)
    assert FAIL_MARKER + b"InvalidFile.FacePose" in data


def test_portrait_without_fail_has_no_marker(tmp_path: Path) -> None:
    assert FAIL_MARKER not in make_portrait(tmp_path / "p.jpg", fmt="jpg").read_bytes()


def test_portrait_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = make_portrait(tmp_path / "a.png", seed=7).read_bytes()
    b = make_portrait(tmp_path / "b.png", seed=7).read_bytes()
    c = make_portrait(tmp_path / "c.png", seed=8).read_bytes()
    assert a == b
    assert a != c


def test_brightness_scales_the_image(tmp_path: Path) -> None:
    def luma(path: Path) -> float:
        with Image.open(path) as img:
            return float(np.asarray(img.convert("L")).mean())

    bright = luma(make_portrait(tmp_path / "b.png"))
    dark = luma(make_portrait(tmp_path / "d.png", brightness=0.15))
    assert dark == pytest.approx(bright * 0.15, rel=0.05)


@pytest.mark.parametrize(
    "kwargs",
    [{"fmt": "gif"}, {"persons": 3}, {"brightness": -1.0}, {"fail": "not a code!"}, {"width": 4}],
)
def test_portrait_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        make_portrait(tmp_path / "x.png", **kwargs)  # type: ignore[arg-type]


def test_speech_wav_is_16k_mono_16bit_with_the_requested_length(tmp_path: Path) -> None:
    path = make_speech(tmp_path / "s.wav", seconds=3.5, seed=1)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
        assert wav.getnframes() == 56_000
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)
    # Speech-like: loud syllables and near-silent pauses, not a steady tone.
    rms = np.sqrt((samples.reshape(-1, 400) ** 2).mean(axis=1))
    assert rms.max() > 3000
    assert (rms < 0.05 * rms.max()).sum() >= 5


def test_speech_is_deterministic_per_seed(tmp_path: Path) -> None:
    a = make_speech(tmp_path / "a.wav", seed=3).read_bytes()
    assert a == make_speech(tmp_path / "b.wav", seed=3).read_bytes()
    assert a != make_speech(tmp_path / "c.wav", seed=4).read_bytes()


def test_speech_mp3_decodes_with_the_requested_length(tmp_path: Path) -> None:
    path = make_speech(tmp_path / "s.mp3", seconds=2.0, fmt="mp3")
    assert path.read_bytes()[:3] in (b"ID3", b"\xff\xf3", b"\xff\xfb", b"\xff\xf2")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name.startswith("mp3")
        decoded = sum(frame.samples for frame in container.decode(stream))
    # MP3 pads with encoder delay and a final partial frame.
    assert 32_000 <= decoded <= 32_000 + 2 * 1152 + 1105


@pytest.mark.parametrize("kwargs", [{"fmt": "ogg"}, {"seconds": 0.0}])
def test_speech_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        make_speech(tmp_path / "x.wav", **kwargs)  # type: ignore[arg-type]
