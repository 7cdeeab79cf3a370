"""Result videos of the emulator: real MP4 files made from the portrait (and the audio).

EMO: the portrait cropped to ``ext_bbox``, 512x512 (1:1) or 512x704 (3:4), H.264 + AAC, as
long as the audio; the mouth opens, the head bobs and the light breathes with the audio's
loudness per frame. Emoji: 512x512 H.264 without audio, each of the 20 templates a fixed
number of whole seconds with its own deterministic motion (zoom, shake, tilt, pulse...).

Synchronous and CPU-bound (the server calls it through a worker thread). Files are written
to a temporary name in the target directory and renamed into place.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._media import MSG_AUDIO_TYPE, MediaError, skin_components

if TYPE_CHECKING:
    from collections.abc import Iterator

    from PIL import Image

BBox = tuple[int, int, int, int]

AUDIO_RATE = 16_000
EMOJI_SIZE = (512, 512)
_EMOJI_FPS = 25


@dataclass(frozen=True)
class Motion:
    """A frame transform as sums of sines over time: zoom, shift (px), tilt (deg), gain.

    Each ``*_amp`` is the peak deviation and each ``*_hz`` its frequency; ``zoom_ramp``
    adds a steady zoom per second (a push-in).
    """

    zoom_amp: float = 0.0
    zoom_hz: float = 1.0
    zoom_ramp: float = 0.0
    shift_x_amp: float = 0.0
    shift_x_hz: float = 1.0
    shift_y_amp: float = 0.0
    shift_y_hz: float = 1.0
    tilt_amp: float = 0.0
    tilt_hz: float = 1.0
    gain_amp: float = 0.0
    gain_hz: float = 1.0

    def at(self, t: float) -> tuple[float, float, float, float, float]:
        """(zoom, dx, dy, tilt degrees, brightness gain) at *t* seconds."""

        def wave(amp: float, hz: float) -> float:
            return amp * math.sin(2 * math.pi * hz * t)

        zoom = 1.0 + abs(wave(self.zoom_amp, self.zoom_hz)) + self.zoom_ramp * t
        return (
            zoom,
            wave(self.shift_x_amp, self.shift_x_hz),
            wave(self.shift_y_amp, self.shift_y_hz),
            wave(self.tilt_amp, self.tilt_hz),
            1.0 + wave(self.gain_amp, self.gain_hz),
        )


@dataclass(frozen=True)
class TemplateSpec:
    """One Emoji template: its id, length in whole seconds and its motion recipe."""

    driven_id: str
    duration: int
    motion: str
    recipe: Motion


_RECIPES: dict[str, Motion] = {
    "bounce": Motion(shift_y_amp=14, shift_y_hz=2.0, zoom_amp=0.02, zoom_hz=2.0),
    "stare": Motion(zoom_ramp=0.05),
    "tearful": Motion(gain_amp=0.08, gain_hz=0.7, tilt_amp=2.0, tilt_hz=0.5),
    "earnest_nod": Motion(shift_y_amp=8, shift_y_hz=1.2),
    "excited_shake": Motion(shift_x_amp=10, shift_x_hz=5.0, zoom_amp=0.04, zoom_hz=2.5),
    "sleepy_droop": Motion(tilt_amp=6.0, tilt_hz=0.25, gain_amp=0.1, gain_hz=0.5),
    "shy_tilt": Motion(tilt_amp=5.0, tilt_hz=0.6, shift_x_amp=6, shift_x_hz=0.6),
    "grin_pulse": Motion(zoom_amp=0.05, zoom_hz=1.5, gain_amp=0.06, gain_hz=1.5),
    "look_up": Motion(shift_y_amp=18, shift_y_hz=0.25, zoom_ramp=0.02),
    "puzzled_tilt": Motion(tilt_amp=8.0, tilt_hz=0.4),
    "frantic_shake": Motion(shift_x_amp=12, shift_x_hz=7.0, shift_y_amp=6, shift_y_hz=6.0),
    "sigh_sway": Motion(shift_x_amp=12, shift_x_hz=0.4, gain_amp=0.05, gain_hz=0.4),
    "smile_zoom": Motion(zoom_ramp=0.04, gain_amp=0.04, gain_hz=1.0),
    "grateful_bow": Motion(shift_y_amp=20, shift_y_hz=0.5, tilt_amp=2.0, tilt_hz=0.5),
    "playful_wobble": Motion(tilt_amp=7.0, tilt_hz=1.5, shift_x_amp=8, shift_x_hz=1.5),
    "smug_lean": Motion(tilt_amp=4.0, tilt_hz=0.3, zoom_amp=0.03, zoom_hz=0.6),
    "eager_lean_in": Motion(zoom_amp=0.06, zoom_hz=0.8, shift_y_amp=6, shift_y_hz=1.6),
    "lazy_sway": Motion(shift_x_amp=10, shift_x_hz=0.3, tilt_amp=3.0, tilt_hz=0.3),
    "disdain_turn": Motion(shift_x_amp=16, shift_x_hz=0.5, gain_amp=0.05, gain_hz=0.5),
    "sob_shiver": Motion(shift_x_amp=4, shift_x_hz=9.0, gain_amp=0.1, gain_hz=0.8),
}

_TEMPLATE_TABLE = [
    ("mengwa_kaixin", 3, "bounce"),
    ("mengwa_dengyan", 2, "stare"),
    ("mengwa_gandong", 4, "tearful"),
    ("mengwa_renzhen_1", 3, "earnest_nod"),
    ("mengwa_jidong", 3, "excited_shake"),
    ("mengwa_kun_1", 4, "sleepy_droop"),
    ("mengwa_jiaoxie", 3, "shy_tilt"),
    ("dagong_kaixin", 3, "grin_pulse"),
    ("dagong_yangwang", 4, "look_up"),
    ("dagong_kunhuo", 3, "puzzled_tilt"),
    ("dagong_zhuakuang", 2, "frantic_shake"),
    ("dagong_wunai", 4, "sigh_sway"),
    ("dagong_weixiao", 2, "smile_zoom"),
    ("dagong_ganji", 5, "grateful_bow"),
    ("jingdian_tiaopi", 3, "playful_wobble"),
    ("jingdian_deyi_1", 3, "smug_lean"),
    ("jingdian_qidai", 4, "eager_lean_in"),
    ("jingdian_landuo_1", 5, "lazy_sway"),
    ("jingdian_xianqi", 2, "disdain_turn"),
    ("jingdian_lei", 4, "sob_shiver"),
]

EMOJI_TEMPLATES: dict[str, TemplateSpec] = {
    driven_id: TemplateSpec(driven_id, seconds, motion, _RECIPES[motion])
    for driven_id, seconds, motion in _TEMPLATE_TABLE
}
"""The 20 Emoji templates (API.md §1.5) by ``driven_id``; durations are the emulator's [I]."""


def render_emo(
    image: bytes,
    ext_bbox: BBox | list[int],
    audio: bytes,
    out: Path,
    *,
    size: tuple[int, int] = (512, 512),
    fps: int = 25,
) -> float:
    """Render an EMO result to *out* (MP4, H.264 + AAC) and return its duration in seconds.

    The crop of *image* to *ext_bbox*, resized to *size*, talks along with *audio*: per
    frame the mouth opens, the head bobs and the light rises with the audio's loudness.
    """
    import numpy as np

    pcm = decode_audio(audio)
    duration = len(pcm) / AUDIO_RATE
    n_frames = max(1, round(duration * fps))
    per_frame = AUDIO_RATE / fps
    rms = np.array(
        [_rms(pcm[round(i * per_frame) : round((i + 1) * per_frame)]) for i in range(n_frames)]
    )
    loud = np.clip(rms / (np.percentile(rms, 95) or 1.0), 0.0, 1.0)
    base = _crop(image, ext_bbox, size)
    mouth = _mouth_box(base)

    def frames() -> Iterator[Image.Image]:
        for i in range(n_frames):
            level = float(loud[i])
            motion = (
                1.04 + 0.02 * level,
                0.0,
                -6.0 * level,
                1.5 * math.sin(i / fps),
                1 + 0.05 * level,
            )
            yield _draw_mouth(_transform(base, *motion), mouth, level, motion)

    _write_mp4(out, frames(), size=size, fps=fps, pcm=pcm)
    return round(duration, 2)


def render_emoji(image: bytes, ext_bbox: BBox | list[int], driven_id: str, out: Path) -> int:
    """Render an Emoji result to *out* (MP4, H.264, 512x512, no audio); return its seconds.

    Raises `KeyError` for an unknown *driven_id* (the server validates ids first).
    """
    spec = EMOJI_TEMPLATES[driven_id]
    base = _crop(image, ext_bbox, EMOJI_SIZE)
    n_frames = spec.duration * _EMOJI_FPS
    margin = _cover_zoom(spec.recipe, EMOJI_SIZE)

    def frames() -> Iterator[Image.Image]:
        for i in range(n_frames):
            zoom, dx, dy, tilt, gain = spec.recipe.at(i / _EMOJI_FPS)
            yield _transform(base, zoom * margin, dx, dy, tilt, gain)

    _write_mp4(out, frames(), size=EMOJI_SIZE, fps=_EMOJI_FPS, pcm=None)
    return spec.duration


def _cover_zoom(recipe: Motion, size: tuple[int, int]) -> float:
    """The zoom that hides the borders the recipe's largest shift and tilt would uncover."""
    theta = math.radians(recipe.tilt_amp)
    shift = 2 * max(recipe.shift_x_amp, recipe.shift_y_amp) / min(size)
    return math.cos(theta) + math.sin(theta) + shift + 0.01


def decode_audio(data: bytes) -> Any:
    """Decode WAV/MP3 bytes to mono float32 samples at `AUDIO_RATE` (a numpy array)."""
    import av
    import numpy as np

    chunks: list[Any] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
            for frame in container.decode(stream):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise MediaError("InvalidURL", MSG_AUDIO_TYPE) from exc
    if not chunks:
        raise MediaError("InvalidURL", MSG_AUDIO_TYPE)
    return np.concatenate(chunks).astype(np.float32)


def _rms(chunk: Any) -> float:
    return float((chunk.astype("float64") ** 2).mean() ** 0.5) if len(chunk) else 0.0


def _crop(image: bytes, ext_bbox: BBox | list[int], size: tuple[int, int]) -> Image.Image:
    from PIL import Image

    with Image.open(io.BytesIO(image)) as img:
        rgb = img.convert("RGB")
    x1, y1, x2, y2 = (int(v) for v in ext_bbox)
    x1, y1 = max(0, x1), max(0, y1)
    x2, y2 = min(rgb.width, x2), min(rgb.height, y2)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"ext_bbox {list(ext_bbox)} does not overlap the {rgb.size} image")
    return rgb.crop((x1, y1, x2, y2)).resize(size, Image.Resampling.BILINEAR)


def _mouth_box(frame: Image.Image) -> tuple[float, float, float, float]:
    """(cx, cy, half width, max half height) of the mouth: from the face found, else a guess."""
    import numpy as np

    small = frame.copy()
    small.thumbnail((160, 160))
    boxes = skin_components(np.asarray(small, dtype=np.float32))
    sx, sy = frame.width / small.width, frame.height / small.height
    if boxes:
        x1, y1, x2, y2 = boxes[0]
        fw, fh = (x2 - x1) * sx, (y2 - y1) * sy
        return ((x1 + x2) / 2 * sx, y1 * sy + 0.78 * fh, 0.14 * fw, 0.1 * fh)
    return (frame.width / 2, frame.height * 0.62, frame.width * 0.06, frame.height * 0.03)


def _transform(
    base: Image.Image, zoom: float, dx: float, dy: float, tilt: float, gain: float
) -> Image.Image:
    """Zoom about the centre, rotate by *tilt* degrees, shift, and scale the brightness."""
    from PIL import Image, ImageEnhance

    cx, cy = base.width / 2, base.height / 2
    cos, sin = math.cos(math.radians(tilt)) / zoom, math.sin(math.radians(tilt)) / zoom
    # Inverse map: output (x, y) samples input R^-1 (x - c - d) / zoom + c.
    x0, y0 = cx + dx, cy + dy
    coeffs = (cos, sin, cx - cos * x0 - sin * y0, -sin, cos, cy + sin * x0 - cos * y0)
    frame = base.transform(base.size, Image.Transform.AFFINE, coeffs, Image.Resampling.NEAREST)
    return ImageEnhance.Brightness(frame).enhance(gain) if abs(gain - 1) > 1e-3 else frame


def _draw_mouth(
    frame: Image.Image,
    mouth: tuple[float, float, float, float],
    level: float,
    motion: tuple[float, float, float, float, float],
) -> Image.Image:
    from PIL import ImageDraw

    if level < 0.05:
        return frame
    zoom, dx, dy, _, _ = motion
    cx = (mouth[0] - frame.width / 2) * zoom + frame.width / 2 + dx
    cy = (mouth[1] - frame.height / 2) * zoom + frame.height / 2 + dy
    half_w, half_h = mouth[2] * zoom, max(1.0, mouth[3] * zoom * level)
    ImageDraw.Draw(frame).ellipse(
        (cx - half_w, cy - half_h, cx + half_w, cy + half_h), fill=(70, 20, 30)
    )
    return frame


def _h264_encoder() -> str:
    import av

    for name in ("libx264", "libopenh264", "h264"):
        if name in av.codecs_available:
            return name
    raise RuntimeError("this PyAV build has no H.264 encoder; install the PyAV wheel from PyPI")


def _write_mp4(
    out: Path, frames: Iterator[Image.Image], *, size: tuple[int, int], fps: int, pcm: Any
) -> None:
    import av
    import numpy as np

    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as mp4:
            video: Any = mp4.add_stream(_h264_encoder(), rate=fps)
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.options = {"preset": "ultrafast", "crf": "26"}
            audio = (
                mp4.add_stream("aac", rate=AUDIO_RATE, layout="mono") if pcm is not None else None
            )
            per_frame, stop = AUDIO_RATE / fps, 0
            for i, image in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
                frame = frame.reformat(format="yuv420p")
                frame.pts = i
                mp4.mux(video.encode(frame))
                if audio is not None:
                    start, stop = round(i * per_frame), round((i + 1) * per_frame)
                    _mux_audio(mp4, audio, pcm[start:stop], start)
            if audio is not None and len(pcm) > stop:
                _mux_audio(mp4, audio, pcm[stop:], stop)
            mp4.mux(video.encode(None))
            if audio is not None:
                mp4.mux(audio.encode(None))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _mux_audio(mp4: Any, stream: Any, chunk: Any, start: int) -> None:
    import av

    if not len(chunk):
        return
    frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = AUDIO_RATE
    frame.pts = start
    mp4.mux(stream.encode(frame))
