from __future__ import annotations

import io
import wave
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoclient.emulator._media import (
    DETECT_MESSAGES,
    MediaError,
    ext_box,
    locate_face,
    probe_audio,
    probe_image,
)
from emoclient.emulator._render import EMOJI_TEMPLATES, render_emo, render_emoji
from emoclient.emulator.samples import portrait_bytes, speech_bytes

# Literal messages from API.md §1.2 / §1.3 (the service's own wording, typos included).
IMAGE_URL_MESSAGE = (
    "The request URL is invalid, please check the request URL is available and the request "
    "image format is one of the following types: JPEG, JPG, PNG, BMP, and WEBP."
)
NO_PERSON = "The input image has no human body. Please upload other image with single person."
MULTI_PERSON = (
    "The input image has multi human bodies. Please upload other image with single person."
)
PROPORTION = (
    "The proportion of the detected person in the picture is too large or too small, "
    "please upload other image."
)
RESOLUTION = (
    "The image resolution is invalid, please make sure that the largest length of image is "
    "smaller than 7000, and the smallest length of image is larger than 400."
)
TOO_DARK = "The value of the image is invalid, please upload other clearer image."
EMO_FACE_POSE = (
    "The pose of the detected face is invalid, please upload other image with the expected "
    "orientation."
)
EMOJI_FACE_POSE = (
    "The pose of the detected face is invalid, please upload other image with the expected "
    "oriention."
)
DRIVEN_IDS = [
    "mengwa_kaixin", "mengwa_dengyan", "mengwa_gandong", "mengwa_renzhen_1", "mengwa_jidong",
    "mengwa_kun_1", "mengwa_jiaoxie", "dagong_kaixin", "dagong_yangwang", "dagong_kunhuo",
    "dagong_zhuakuang", "dagong_wunai", "dagong_weixiao", "dagong_ganji", "jingdian_tiaopi",
    "jingdian_deyi_1", "jingdian_qidai", "jingdian_landuo_1", "jingdian_xianqi", "jingdian_lei",
]  # fmt: skip


def media_error(fn: Any, *args: Any, **kwargs: Any) -> MediaError:
    with pytest.raises(MediaError) as info:
        fn(*args, **kwargs)
    return info.value


# --- probe_image ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "webp"])
def test_probe_image_reads_every_supported_format(fmt: str) -> None:
    info = probe_image(portrait_bytes(width=600, height=800, fmt=fmt))
    assert (info.format, info.width, info.height) == (fmt, 600, 800)
    assert 60 < info.mean_luma < 220


def test_probe_image_reads_multi_picture_jpeg_as_jpeg() -> None:
    from PIL import Image

    with Image.open(io.BytesIO(portrait_bytes(width=600, height=800))) as img:
        buf = io.BytesIO()
        img.save(buf, format="MPO", save_all=True, append_images=[img.copy()])
    assert probe_image(buf.getvalue()).format == "jpeg"


@pytest.mark.parametrize("data", [b"", b"hello, not an image", b"GIF89a" + bytes(64)])
def test_probe_image_rejects_unreadable_files_as_invalid_url(data: bytes) -> None:
    err = media_error(probe_image, data)
    assert (err.code, err.message) == ("InvalidURL", IMAGE_URL_MESSAGE)


def test_probe_image_rejects_files_over_10mb() -> None:
    err = media_error(probe_image, portrait_bytes(fmt="bmp") + bytes(10 * 1024 * 1024))
    assert (err.code, err.message) == ("InvalidURL", "File size is larger than 10MB.")


@pytest.mark.parametrize(("width", "height"), [(399, 800), (800, 399), (7001, 400)])
def test_probe_image_rejects_sides_outside_400_to_7000(width: int, height: int) -> None:
    err = media_error(probe_image, portrait_bytes(width=width, height=height, fmt="jpeg"))
    assert (err.code, err.message) == ("InvalidFile.Resolution", RESOLUTION)


def test_probe_image_accepts_the_extreme_allowed_sides() -> None:
    info = probe_image(portrait_bytes(width=7000, height=400, fmt="jpeg"))
    assert (info.width, info.height) == (7000, 400)


def test_probe_image_finds_dark_images_too_dark() -> None:
    err = media_error(probe_image, portrait_bytes(brightness=0.15))
    assert (err.code, err.message) == ("InvalidFile.Value", TOO_DARK)


def test_probe_image_darkness_threshold_is_configurable() -> None:
    data = portrait_bytes(brightness=0.5)
    assert probe_image(data).mean_luma > 30
    assert media_error(probe_image, data, min_luma=200).code == "InvalidFile.Value"


# --- locate_face ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("brightness", [0.3, 1.0])
def test_locate_face_finds_the_one_face_inside_the_image(seed: int, brightness: float) -> None:
    guess = locate_face(portrait_bytes(seed=seed, brightness=brightness))
    x1, y1, x2, y2 = guess.face_bbox
    assert (guess.width, guess.height) == (768, 1024)
    assert 0 <= x1 < x2 <= 768
    assert 0 <= y1 < y2 <= 1024
    # The drawn face is centred horizontally, about a third of the width wide.
    assert abs((x1 + x2) / 2 - 384) < 40
    assert 0.25 * 768 < x2 - x1 < 0.5 * 768


def test_locate_face_is_deterministic_and_format_independent() -> None:
    boxes = {locate_face(portrait_bytes(seed=3, fmt=fmt)).face_bbox for fmt in ("png", "bmp")}
    assert len(boxes) == 1
    assert locate_face(portrait_bytes(seed=3, fmt="png")).face_bbox in boxes


def test_locate_face_reports_no_person_in_a_landscape() -> None:
    err = media_error(locate_face, portrait_bytes(persons=0))
    assert (err.code, err.message, err.humanoid) == ("InvalidFile.Content", NO_PERSON, False)


def test_locate_face_reports_two_persons() -> None:
    err = media_error(locate_face, portrait_bytes(persons=2))
    assert (err.code, err.message, err.humanoid) == ("InvalidFile.Content", MULTI_PERSON, True)


@pytest.mark.parametrize("face_scale", [0.2, 2.0])
def test_locate_face_rejects_faces_too_small_or_too_large(face_scale: float) -> None:
    err = media_error(locate_face, portrait_bytes(face_scale=face_scale))
    assert (err.code, err.message) == ("InvalidFile.BodyProportion", PROPORTION)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("InvalidFile.FacePose", EMO_FACE_POSE),
        (
            "InvalidFile.FullFace",
            "The pose of the detected face is invalid, please upload other image with whole face.",
        ),
        (
            "InvalidFile.FrontBody",
            "The pose of the detected person is invalid, please upload other image with the "
            "front view.",
        ),
        ("InvalidFile.BodyProportion", PROPORTION),
        ("InvalidFile.Content", NO_PERSON),
        ("InvalidFile.Value", TOO_DARK),
        ("InvalidFile.Resolution", RESOLUTION),
    ],
)
@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "webp"])
def test_fail_marker_provokes_every_documented_detection_failure(
    code: str, message: str, fmt: str
) -> None:
    err = media_error(locate_face, portrait_bytes(fmt=fmt, fail=code))
    assert (err.code, err.message) == (code, message)
    assert err.humanoid is (code != "InvalidFile.Content")


def test_fail_marker_uses_the_emoji_wording_for_emoji_detect() -> None:
    err = media_error(
        locate_face, portrait_bytes(fail="InvalidFile.FacePose"), model="emoji-detect-v1"
    )
    assert err.message == EMOJI_FACE_POSE


def test_fail_marker_with_an_undocumented_code_still_fails_with_that_code() -> None:
    err = media_error(locate_face, portrait_bytes(fail="InvalidFile.Blurry"))
    assert err.code == "InvalidFile.Blurry"
    assert err.message


def test_detect_messages_cover_the_documented_codes() -> None:
    assert set(DETECT_MESSAGES) >= {
        "InvalidFile.Content",
        "InvalidFile.BodyProportion",
        "InvalidFile.Resolution",
        "InvalidFile.Value",
        "InvalidFile.FrontBody",
        "InvalidFile.FullFace",
        "InvalidFile.FacePose",
    }


# --- ext_box --------------------------------------------------------------------------------


def test_ext_box_reproduces_the_documented_example_closely() -> None:
    # API.md §1.1: face [302, 286, 610, 593] -> ext [71, 9, 840, 778] (1:1).
    box = ext_box((302, 286, 610, 593), ratio="1:1", width=1000, height=1000, scale=2.5)
    assert box[2] - box[0] == box[3] - box[1]
    assert all(abs(a - b) <= 2 for a, b in zip(box, (71, 9, 840, 778), strict=True))


@st.composite
def faces(draw: st.DrawFn) -> tuple[int, int, tuple[int, int, int, int]]:
    width = draw(st.integers(400, 7000))
    height = draw(st.integers(400, 7000))
    x1 = draw(st.integers(0, width - 1))
    y1 = draw(st.integers(0, height - 1))
    x2 = draw(st.integers(x1 + 1, width))
    y2 = draw(st.integers(y1 + 1, height))
    return width, height, (x1, y1, x2, y2)


@settings(max_examples=300, deadline=None)
@given(face=faces(), ratio=st.sampled_from(["1:1", "3:4"]), scale=st.floats(1.0, 4.0))
def test_ext_box_has_the_exact_aspect_and_stays_inside_the_image(
    face: tuple[int, int, tuple[int, int, int, int]], ratio: str, scale: float
) -> None:
    width, height, bbox = face
    x1, y1, x2, y2 = ext_box(bbox, ratio=ratio, width=width, height=height, scale=scale)  # type: ignore[arg-type]
    w, h = x2 - x1, y2 - y1
    assert w > 0
    assert h > 0
    assert w * (4 if ratio == "3:4" else 1) == h * (3 if ratio == "3:4" else 1)
    assert 0 <= x1 < x2 <= width
    assert 0 <= y1 < y2 <= height
    if w >= bbox[2] - bbox[0] and h >= bbox[3] - bbox[1]:
        assert x1 <= bbox[0] <= bbox[2] <= x2
        assert y1 <= bbox[1] <= bbox[3] <= y2


# --- probe_audio ----------------------------------------------------------------------------


def silent_wav(seconds: float, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(bytes(2 * round(seconds * rate)))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_probe_audio_measures_wav_and_mp3(fmt: str) -> None:
    data = speech_bytes(seconds=2.5, fmt=fmt)
    info = probe_audio(data)
    assert (info.format, info.size) == (fmt, len(data))
    assert info.duration == pytest.approx(2.5, abs=0.08)


def test_probe_audio_sniffs_mp3_without_an_id3_tag() -> None:
    data = speech_bytes(seconds=1.5, fmt="mp3")
    assert data[:3] == b"ID3"
    # ID3v2 header: 10 bytes, then the tag size as a 28-bit "syncsafe" integer.
    tag_size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[6:10]))
    bare = data[10 + tag_size :]
    assert bare[0] == 0xFF
    info = probe_audio(bare)
    assert info.format == "mp3"
    assert info.duration == pytest.approx(1.5, abs=0.08)


def test_probe_audio_accepts_sixty_seconds_and_rejects_more() -> None:
    assert probe_audio(silent_wav(60.0)).duration == 60.0
    err = media_error(probe_audio, silent_wav(60.5))
    assert (err.code, err.message) == ("InvalidURL", "The input audio is longer than 60s!")


def test_probe_audio_rejects_files_over_15mb() -> None:
    err = media_error(probe_audio, silent_wav(1.0) + bytes(15 * 1024 * 1024))
    assert (err.code, err.message) == ("InvalidURL", "File size is larger than 15MB.")


@pytest.mark.parametrize(
    "data",
    [b"OggS" + bytes(100), b"", portrait_bytes(fmt="jpeg"), b"RIFF\x00\x00\x00\x00WAVEjunk"],
)
def test_probe_audio_rejects_other_types(data: bytes) -> None:
    err = media_error(probe_audio, data)
    assert (err.code, err.message) == (
        "InvalidURL",
        "File type is not supported. Allowed types are: .wav, .mp3.",
    )


# --- rendering ------------------------------------------------------------------------------


def decode(path: Path) -> tuple[list[tuple[str, str]], float, list[Any]]:
    with av.open(str(path)) as container:
        streams = [(str(s.type), s.codec_context.name) for s in container.streams]
        duration = (container.duration or 0) / 1_000_000
        frames: list[Any] = [
            f.to_ndarray(format="rgb24").astype(np.int16) for f in container.decode(video=0)
        ]
    return streams, duration, frames


@pytest.fixture(scope="module")
def portrait() -> tuple[bytes, tuple[int, int, int, int]]:
    data = portrait_bytes(seed=1)
    return data, locate_face(data).face_bbox


@pytest.mark.parametrize(("ratio", "size"), [("1:1", (512, 512)), ("3:4", (512, 704))])
def test_render_emo_writes_h264_aac_of_the_audio_length(
    tmp_path: Path, portrait: tuple[bytes, Any], ratio: str, size: tuple[int, int]
) -> None:
    image, face = portrait
    box = ext_box(face, ratio=ratio, width=768, height=1024)  # type: ignore[arg-type]
    out = tmp_path / "emo.mp4"
    seconds = render_emo(image, box, speech_bytes(seconds=3.0, seed=2), out, size=size)
    assert seconds == 3.0
    streams, duration, frames = decode(out)
    assert sorted(streams) == [("audio", "aac"), ("video", "h264")]
    assert duration == pytest.approx(3.0, abs=0.04)
    assert len(frames) == 75
    assert frames[0].shape == (size[1], size[0], 3)
    assert [p.name for p in tmp_path.iterdir()] == ["emo.mp4"]


def test_render_emo_moves_with_the_loudness(tmp_path: Path, portrait: tuple[bytes, Any]) -> None:
    image, face = portrait
    audio = speech_bytes(seconds=2.0, seed=5, fmt="mp3")
    out = tmp_path / "emo.mp4"
    render_emo(image, ext_box(face, ratio="1:1", width=768, height=1024), audio, out)
    _, _, frames = decode(out)
    # The frame before the first syllable (silence) against every later frame.
    changes = [float(np.abs(f - frames[0]).mean()) for f in frames[1:]]
    assert max(changes) > 3.0
    assert sum(c > 1.0 for c in changes) > len(changes) // 3


def test_render_emo_rejects_undecodable_audio(tmp_path: Path, portrait: tuple[bytes, Any]) -> None:
    image, _ = portrait
    err = media_error(render_emo, image, (0, 0, 600, 600), b"RIFF....WAVEnope", tmp_path / "x.mp4")
    assert err.code == "InvalidURL"
    assert not list(tmp_path.iterdir())


def test_emoji_templates_are_the_twenty_documented_ids() -> None:
    assert list(EMOJI_TEMPLATES) == DRIVEN_IDS
    assert all(spec.duration in (2, 3, 4, 5) for spec in EMOJI_TEMPLATES.values())
    assert len({spec.recipe for spec in EMOJI_TEMPLATES.values()}) == 20


@pytest.mark.parametrize("driven_id", ["mengwa_dengyan", "dagong_zhuakuang", "jingdian_xianqi"])
def test_render_emoji_writes_silent_h264_of_the_template_length(
    tmp_path: Path, portrait: tuple[bytes, Any], driven_id: str
) -> None:
    image, face = portrait
    out = tmp_path / "emoji.mp4"
    box = ext_box(face, ratio="1:1", width=768, height=1024, scale=2.2)
    seconds = render_emoji(image, box, driven_id, out)
    assert seconds == EMOJI_TEMPLATES[driven_id].duration
    streams, duration, frames = decode(out)
    assert streams == [("video", "h264")]
    assert duration == pytest.approx(seconds, abs=0.04)
    assert frames[0].shape == (512, 512, 3)
    assert max(float(np.abs(f - frames[0]).mean()) for f in frames) > 2.0
