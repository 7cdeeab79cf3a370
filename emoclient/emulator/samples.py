"""Procedural sample inputs: portraits and speech-like audio, made on the spot.

Tests, the demo and the benchmarks need real image and audio files that the emulator
accepts (or rejects on purpose). Nothing here is bundled: every file is drawn from a seed,
so the same arguments always give the same bytes.

`make_portrait` can embed a marker (``emoclient-emulator:fail=<code>;``) that the emulator's
face detector honours, so any documented detection failure can be provoked on demand.
Pillow, numpy and (for MP3) PyAV are needed; they load only when a function is called.
"""

from __future__ import annotations

import io
import random
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image, ImageDraw

__all__ = ["FAIL_MARKER", "SPEECH_SAMPLE_RATE", "make_portrait", "make_speech"]

FAIL_MARKER = b"emoclient-emulator:fail="
"""Prefix of the marker that makes the emulator's detector fail with the code that follows.

The code ends at a ``;`` (binary bytes may follow the marker inside the file)."""

SPEECH_SAMPLE_RATE = 16_000
"""Sample rate (Hz) of the audio that `make_speech` writes."""

_IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "webp": "WEBP"}
_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]{0,63}$")

# Palettes chosen so that nothing but skin falls inside the detector's skin-tone range:
# cool backgrounds and clothes, near-black hair.
_SKIN = [(236, 196, 170), (224, 172, 138), (198, 148, 112), (168, 118, 84), (141, 94, 62)]
_BACKGROUNDS = [
    ((120, 160, 210), (200, 220, 240)),
    ((90, 140, 140), (180, 215, 210)),
    ((150, 150, 190), (215, 215, 235)),
    ((110, 150, 120), (200, 225, 205)),
]
_CLOTHES = [(40, 60, 120), (30, 90, 80), (70, 70, 90), (20, 40, 70), (90, 60, 120)]
_HAIR = [(28, 22, 20), (35, 30, 30), (20, 20, 24), (45, 38, 36)]


@dataclass(frozen=True)
class _Person:
    cx: float
    cy: float
    face_w: float
    skin: tuple[int, int, int]
    clothes: tuple[int, int, int]
    hair: tuple[int, int, int]


def make_portrait(
    path: str | Path,
    *,
    width: int = 768,
    height: int = 1024,
    seed: int = 0,
    persons: int = 1,
    brightness: float = 1.0,
    fmt: str = "png",
    fail: str | None = None,
    face_scale: float = 1.0,
) -> Path:
    """Draw a procedural portrait and write it to *path*; return the path.

    One person by default (shoulders, a skin-toned face with eyes, mouth and hair);
    ``persons=2`` draws two people side by side, ``persons=0`` a landscape with nobody in it.
    ``brightness`` scales every pixel: at 0.15 or less the emulator finds the image too dark
    (``InvalidFile.Value``), from 0.3 up it still finds the face. ``face_scale`` scales the
    person: 0.2 or less, or 2.0 or more, fails the body proportion check. ``fmt`` is one of
    png, jpeg/jpg, bmp, webp. ``fail`` embeds a marker that makes the emulator's detector
    fail with that code, e.g. ``"InvalidFile.FacePose"``.
    """
    data = portrait_bytes(
        width=width,
        height=height,
        seed=seed,
        persons=persons,
        brightness=brightness,
        fmt=fmt,
        fail=fail,
        face_scale=face_scale,
    )
    out = Path(path)
    out.write_bytes(data)
    return out


def portrait_bytes(
    *,
    width: int = 768,
    height: int = 1024,
    seed: int = 0,
    persons: int = 1,
    brightness: float = 1.0,
    fmt: str = "png",
    fail: str | None = None,
    face_scale: float = 1.0,
) -> bytes:
    """Like `make_portrait`, but return the encoded image instead of writing a file."""
    pil_format = _check_portrait_args(width, height, persons, brightness, fmt, fail)
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", (width, height))
    if persons == 0:
        _draw_landscape(img, rng)
    else:
        _draw_background(img, rng)
        draw = ImageDraw.Draw(img)
        for person in _layout(width, height, persons, face_scale, rng):
            _draw_person(draw, person)
    if brightness != 1.0:
        img = img.point(lambda v: min(255, round(v * brightness)))
    return _encode(img, pil_format, fail)


def _check_portrait_args(
    width: int, height: int, persons: int, brightness: float, fmt: str, fail: str | None
) -> str:
    if fmt.lower() not in _IMAGE_FORMATS:
        raise ValueError(
            f"unsupported portrait format {fmt!r}; use one of {sorted(_IMAGE_FORMATS)}"
        )
    if persons not in (0, 1, 2):
        raise ValueError(f"persons must be 0, 1 or 2, not {persons}")
    if width < 16 or height < 16:
        raise ValueError(f"portrait of {width}x{height} px is too small to draw; use >= 16 px")
    if brightness < 0:
        raise ValueError(f"brightness must be >= 0, not {brightness}")
    if fail is not None and not _CODE_RE.match(fail):
        raise ValueError(f"fail={fail!r} is not an error code like 'InvalidFile.FacePose'")
    return _IMAGE_FORMATS[fmt.lower()]


def _layout(
    width: int, height: int, persons: int, scale: float, rng: random.Random
) -> list[_Person]:
    skins = rng.sample(_SKIN, k=persons)
    clothes = rng.sample(_CLOTHES, k=persons)
    if persons == 1:
        centers = [(0.5 + rng.uniform(-0.03, 0.03), 0.40 + rng.uniform(-0.02, 0.02))]
        face_w = min(width, height * 0.75) * 0.34 * scale
    else:
        centers = [(0.27, 0.42), (0.73, 0.44)]
        face_w = min(width / 2, height * 0.75) * 0.36 * scale
    return [
        _Person(
            cx=fx * width,
            cy=fy * height,
            face_w=face_w * rng.uniform(0.95, 1.05),
            skin=skin,
            clothes=cloth,
            hair=rng.choice(_HAIR),
        )
        for (fx, fy), skin, cloth in zip(centers, skins, clothes, strict=True)
    ]


def _draw_background(img: Image.Image, rng: random.Random) -> None:
    top, bottom = rng.choice(_BACKGROUNDS)
    _vertical_gradient(img, top, bottom)


def _vertical_gradient(
    img: Image.Image, top: tuple[int, int, int], bottom: tuple[int, int, int]
) -> None:
    from PIL import Image

    column = Image.new("RGB", (1, 256))
    column.putdata(
        [
            tuple(round(a + (b - a) * i / 255) for a, b in zip(top, bottom, strict=True))
            for i in range(256)
        ]
    )
    img.paste(column.resize(img.size, Image.Resampling.BILINEAR))


def _draw_person(draw: ImageDraw.ImageDraw, p: _Person) -> None:
    fw, fh = p.face_w, p.face_w * 1.3
    cx, cy = p.cx, p.cy
    # Body: shoulders plus a high collar, so the skin region is the head alone.
    draw.ellipse((cx - 1.6 * fw, cy + 0.85 * fh, cx + 1.6 * fw, cy + 3.2 * fh), fill=p.clothes)
    draw.rectangle((cx - 0.28 * fw, cy + 0.3 * fh, cx + 0.28 * fw, cy + 1.0 * fh), fill=p.clothes)
    # Hair behind the head, then the face, the ears and a fringe over the forehead.
    draw.ellipse((cx - 0.62 * fw, cy - 0.62 * fh, cx + 0.62 * fw, cy + 0.25 * fh), fill=p.hair)
    draw.ellipse((cx - 0.58 * fw, cy - 0.05 * fh, cx - 0.42 * fw, cy + 0.15 * fh), fill=p.skin)
    draw.ellipse((cx + 0.42 * fw, cy - 0.05 * fh, cx + 0.58 * fw, cy + 0.15 * fh), fill=p.skin)
    draw.ellipse((cx - 0.5 * fw, cy - 0.5 * fh, cx + 0.5 * fw, cy + 0.5 * fh), fill=p.skin)
    draw.chord(
        (cx - 0.55 * fw, cy - 0.62 * fh, cx + 0.55 * fw, cy - 0.1 * fh), 180, 360, fill=p.hair
    )
    _draw_features(draw, p, fw, fh)


def _draw_features(draw: ImageDraw.ImageDraw, p: _Person, fw: float, fh: float) -> None:
    cx, cy = p.cx, p.cy
    shade = tuple(max(0, c - 40) for c in p.skin)
    for side in (-1, 1):
        ex = cx + side * 0.2 * fw
        draw.line(
            (ex - 0.1 * fw, cy - 0.16 * fh, ex + 0.1 * fw, cy - 0.17 * fh),
            fill=p.hair,
            width=max(2, round(fw * 0.03)),
        )
        draw.ellipse(
            (ex - 0.09 * fw, cy - 0.1 * fh, ex + 0.09 * fw, cy - 0.02 * fh), fill=(245, 245, 245)
        )
        draw.ellipse(
            (ex - 0.04 * fw, cy - 0.09 * fh, ex + 0.04 * fw, cy - 0.03 * fh), fill=(50, 40, 30)
        )
    draw.line(
        (cx, cy - 0.02 * fh, cx - 0.04 * fw, cy + 0.12 * fh),
        fill=shade,
        width=max(2, round(fw * 0.02)),
    )
    draw.chord(
        (cx - 0.16 * fw, cy + 0.16 * fh, cx + 0.16 * fw, cy + 0.3 * fh), 0, 180, fill=(170, 60, 70)
    )


def _draw_landscape(img: Image.Image, rng: random.Random) -> None:
    from PIL import ImageDraw

    w, h = img.size
    _vertical_gradient(img, (100, 150, 215), (205, 225, 245))
    draw = ImageDraw.Draw(img)
    sun_x, sun_r = rng.uniform(0.15, 0.85) * w, 0.07 * min(w, h)
    draw.ellipse(
        (sun_x - sun_r, 0.12 * h, sun_x + sun_r, 0.12 * h + 2 * sun_r), fill=(255, 252, 225)
    )
    for i, color in enumerate([(110, 120, 150), (80, 100, 120)]):
        base = (0.55 + 0.08 * i) * h
        points = [(x * w / 8, base - rng.uniform(0.05, 0.25) * h) for x in range(9)]
        draw.polygon([(0, h), *points, (w, h)], fill=color)
    draw.rectangle((0, 0.72 * h, w, h), fill=(70, 130, 75))
    draw.rectangle((0, 0.85 * h, w, h), fill=(60, 110, 160))


def _encode(img: Image.Image, pil_format: str, fail: str | None) -> bytes:
    marker = FAIL_MARKER + fail.encode() + b";" if fail else None
    options: dict[str, Any] = {}
    if pil_format == "PNG":
        options["compress_level"] = 1  # fast; these files are throwaway inputs
    if pil_format == "PNG" and marker:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Comment", marker.decode())  # tEXt chunks are stored uncompressed
        options["pnginfo"] = info
    elif pil_format == "JPEG":
        options["quality"] = 90
        if marker:
            options["comment"] = marker
    elif pil_format == "WEBP":
        options["quality"] = 85
        if marker:
            options["xmp"] = marker
    buf = io.BytesIO()
    img.save(buf, format=pil_format, **options)
    data = buf.getvalue()
    if pil_format == "BMP" and marker:
        data += marker  # BMP has no metadata block; decoders ignore trailing bytes
    return data


def make_speech(path: str | Path, *, seconds: float = 4.0, seed: int = 0, fmt: str = "wav") -> Path:
    """Write speech-like audio to *path* (16 kHz mono); return the path.

    Syllables at a speaking rate, each a voiced tone with a gliding pitch and harmonics shaped
    by vowel-like formants, grouped into words separated by pauses. ``fmt`` is ``"wav"``
    (16-bit PCM) or ``"mp3"`` (needs an MP3 encoder in PyAV's FFmpeg build).
    """
    data = speech_bytes(seconds=seconds, seed=seed, fmt=fmt)
    out = Path(path)
    out.write_bytes(data)
    return out


def speech_bytes(*, seconds: float = 4.0, seed: int = 0, fmt: str = "wav") -> bytes:
    """Like `make_speech`, but return the encoded audio instead of writing a file."""
    if fmt not in ("wav", "mp3"):
        raise ValueError(f"unsupported audio format {fmt!r}; use 'wav' or 'mp3'")
    if not 0 < seconds <= 600:
        raise ValueError(f"seconds must be in (0, 600], not {seconds}")
    samples = _synthesize(seconds, seed)
    return _wav_bytes(samples) if fmt == "wav" else _mp3_bytes(samples)


def _synthesize(seconds: float, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = round(seconds * SPEECH_SAMPLE_RATE)
    t = np.arange(n) / SPEECH_SAMPLE_RATE
    envelope, f0, formant_1 = _syllable_tracks(n, rng)
    f0 = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))  # vibrato-ish jitter
    phase = 2 * np.pi * np.cumsum(f0) / SPEECH_SAMPLE_RATE
    voice = np.zeros(n)
    for k in range(1, 17):
        freq = k * f0
        gain = _formant_gain(freq, formant_1) / k**0.6
        voice += np.where(freq < SPEECH_SAMPLE_RATE / 2 - 500, gain, 0.0) * np.sin(k * phase)
    voice *= envelope
    voice += 0.004 * rng.standard_normal(n)  # breath / room noise
    peak = float(np.max(np.abs(voice))) or 1.0
    return (voice / peak * 0.8 * 32767).astype("<i2")


def _syllable_tracks(n: int, rng: Any) -> tuple[Any, Any, Any]:
    """Per-sample loudness, pitch and first formant for a run of words and pauses."""
    import numpy as np

    envelope, f0, formant = np.zeros(n), np.full(n, 140.0), np.full(n, 600.0)
    pos = round(rng.uniform(0.05, 0.15) * SPEECH_SAMPLE_RATE)
    base_pitch = rng.uniform(110, 210)
    while pos < n:
        for _ in range(int(rng.integers(2, 6))):
            length = round(rng.uniform(0.14, 0.26) * SPEECH_SAMPLE_RATE)
            end = min(n, pos + length)
            span = end - pos
            if span <= 0:
                break
            envelope[pos:end] = np.hanning(length)[:span] * rng.uniform(0.6, 1.0)
            start_pitch = base_pitch * rng.uniform(0.9, 1.15)
            f0[pos:end] = np.linspace(start_pitch, start_pitch * rng.uniform(0.85, 1.1), span)
            formant[pos:end] = rng.choice([300.0, 450.0, 650.0, 800.0])
            pos = end + round(rng.uniform(0.01, 0.05) * SPEECH_SAMPLE_RATE)
        pos += round(rng.uniform(0.15, 0.4) * SPEECH_SAMPLE_RATE)
    return envelope, f0, formant


def _formant_gain(freq: Any, formant_1: Any) -> Any:
    import numpy as np

    gain = np.exp(-(((freq - formant_1) / 180.0) ** 2))
    gain = gain + 0.6 * np.exp(-(((freq - 1500.0) / 250.0) ** 2))
    return gain + 0.3 * np.exp(-(((freq - 2500.0) / 300.0) ** 2)) + 0.05


def _wav_bytes(samples: Any) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SPEECH_SAMPLE_RATE)
        wav.writeframes(samples.tobytes())
    return buf.getvalue()


def _mp3_bytes(samples: Any) -> bytes:
    import av

    encoder = next((c for c in ("libmp3lame", "mp3", "libshine") if c in av.codecs_available), None)
    if encoder is None:
        raise RuntimeError(
            "this PyAV build has no MP3 encoder (libmp3lame); write WAV instead with fmt='wav'"
        )
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp3") as container:
        stream = container.add_stream(encoder, rate=SPEECH_SAMPLE_RATE, layout="mono")
        step = 16_000
        for start in range(0, len(samples), step):
            chunk = samples[start : start + step].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = SPEECH_SAMPLE_RATE
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()
