"""Image and audio checks of the emulator: probing, the face heuristic and the crop box.

Everything here is synchronous and CPU-bound; the server calls it through a worker thread.
Failures raise `MediaError` with the code and message the real service uses (API.md §1).

The face locator is a deterministic heuristic, not a neural detector: skin-tone pixels
(YCbCr range) on a downscaled copy, grouped into connected components. One large component
is a face; none means no person; two or more significant ones mean several persons; a face
too small or too large for the frame fails the body-proportion check. A marker embedded by
`emoclient.emulator.samples.make_portrait(fail=...)` overrides the heuristic with any code.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .samples import FAIL_MARKER

if TYPE_CHECKING:
    from PIL import Image

BBox = tuple[int, int, int, int]
ImageFormat = Literal["jpeg", "png", "bmp", "webp"]
AudioFormat = Literal["wav", "mp3"]
Ratio = Literal["1:1", "3:4"]

MIN_SIDE, MAX_SIDE = 400, 7000
MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_AUDIO_BYTES = 15 * 1024 * 1024
MAX_AUDIO_SECONDS = 60.0
DEFAULT_MIN_LUMA = 30.0
"""Mean luma (0-255) below which an image is "too dark" (`InvalidFile.Value`)."""

# Verbatim from the EMO error table (API.md §1.2, seed 000) unless marked [I].
MSG_IMAGE_URL = (
    "The request URL is invalid, please check the request URL is available and the request "
    "image format is one of the following types: JPEG, JPG, PNG, BMP, and WEBP."
)
MSG_IMAGE_TOO_BIG = "File size is larger than 10MB."  # [I] mirrors the audio message
MSG_AUDIO_TYPE = "File type is not supported. Allowed types are: .wav, .mp3."
MSG_AUDIO_LONG = "The input audio is longer than 60s!"
MSG_AUDIO_BIG = "File size is larger than 15MB."
MSG_NO_PERSON = "The input image has no human body. Please upload other image with single person."
MSG_MULTI_PERSON = (
    "The input image has multi human bodies. Please upload other image with single person."
)
MSG_UNKNOWN_FAILURE = "The input image is invalid, please upload other image."  # [I]
DETECT_MESSAGES: dict[str, str] = {
    "InvalidFile.Content": MSG_NO_PERSON,
    "InvalidFile.BodyProportion": (
        "The proportion of the detected person in the picture is too large or too small, "
        "please upload other image."
    ),
    "InvalidFile.Resolution": (
        "The image resolution is invalid, please make sure that the largest length of image is "
        "smaller than 7000, and the smallest length of image is larger than 400."
    ),
    "InvalidFile.Value": "The value of the image is invalid, please upload other clearer image.",
    "InvalidFile.FrontBody": (
        "The pose of the detected person is invalid, please upload other image with the front view."
    ),
    "InvalidFile.FullFace": (
        "The pose of the detected face is invalid, please upload other image with whole face."
    ),
    "InvalidFile.FacePose": (
        "The pose of the detected face is invalid, please upload other image with the expected "
        "orientation."
    ),
    "InvalidURL": MSG_IMAGE_URL,
}
"""The message for each detection failure code (EMO wording)."""
# emoji-detect-v1 answers with the same text but the source's typo (API.md §1.3).
_EMOJI_FACE_POSE = (
    "The pose of the detected face is invalid, please upload other image with the expected "
    "oriention."
)

# Pillow opens multi-picture JPEGs (many phone cameras) as "MPO"; they are JPEG files.
_PIL_FORMATS: dict[str, ImageFormat] = {
    "JPEG": "jpeg",
    "MPO": "jpeg",
    "PNG": "png",
    "BMP": "bmp",
    "WEBP": "webp",
}
_MARKER_RE = re.compile(re.escape(FAIL_MARKER) + rb"([A-Za-z][A-Za-z0-9_.]{0,63});")
_WORK_SIDE = 160  # pixels on the long side of the copy the heuristics look at


class MediaError(Exception):
    """An input the service would reject, with the service's error code and message.

    ``humanoid`` says whether a person was seen, for the detection response's field.
    """

    def __init__(self, code: str, message: str, *, humanoid: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.humanoid = humanoid


@dataclass(frozen=True)
class ImageInfo:
    """What `probe_image` found: container format, size in pixels and mean luma (0-255)."""

    format: ImageFormat
    width: int
    height: int
    mean_luma: float


@dataclass(frozen=True)
class FaceGuess:
    """Where `locate_face` put the single face, in pixels of the original image."""

    face_bbox: BBox
    width: int
    height: int
    humanoid: bool = True


@dataclass(frozen=True)
class AudioInfo:
    """What `probe_audio` found: container format, duration in seconds, size in bytes."""

    format: AudioFormat
    duration: float
    size: int


def probe_image(
    data: bytes, *, min_luma: float = DEFAULT_MIN_LUMA, max_bytes: int = MAX_IMAGE_BYTES
) -> ImageInfo:
    """Check an image as the service does before detection and describe it.

    Raises `MediaError`: ``InvalidURL`` (too big, unreadable or not JPEG/PNG/BMP/WEBP),
    ``InvalidFile.Resolution`` (a side outside 400-7000 px), ``InvalidFile.Value`` (mean luma
    below *min_luma*).
    """
    if len(data) > max_bytes:
        raise MediaError("InvalidURL", MSG_IMAGE_TOO_BIG)
    img = _open_image(data)
    fmt = _PIL_FORMATS[str(img.format)]
    width, height = img.size
    if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
        raise MediaError("InvalidFile.Resolution", DETECT_MESSAGES["InvalidFile.Resolution"])
    luma = float(_small_rgb(img).mean(axis=2).mean())
    if luma < min_luma:
        raise MediaError("InvalidFile.Value", DETECT_MESSAGES["InvalidFile.Value"])
    return ImageInfo(format=fmt, width=width, height=height, mean_luma=round(luma, 2))


def fail_marker(data: bytes) -> str | None:
    """The failure code embedded by ``make_portrait(fail=...)``, or None."""
    match = _MARKER_RE.search(data)
    return match.group(1).decode() if match else None


def detect_message(code: str, *, model: str = "emo-detect-v1") -> str:
    """The service's message for a detection failure *code* as *model* words it."""
    if model.startswith("emoji") and code == "InvalidFile.FacePose":
        return _EMOJI_FACE_POSE
    return DETECT_MESSAGES.get(code, MSG_UNKNOWN_FAILURE)


def locate_face(data: bytes, *, model: str = "emo-detect-v1") -> FaceGuess:
    """Find the one face in an image with the deterministic skin-tone heuristic.

    Raises `MediaError`: the embedded fail marker's code if there is one, else
    ``InvalidFile.Content`` (no person, or several), ``InvalidFile.BodyProportion`` (face
    too small or too large for the frame), ``InvalidURL`` (unreadable image).
    """
    code = fail_marker(data)
    if code is not None:
        raise MediaError(
            code, detect_message(code, model=model), humanoid=code != "InvalidFile.Content"
        )
    img = _open_image(data)
    width, height = img.size
    small = _small_rgb(img)
    boxes = skin_components(small)
    if not boxes:
        raise MediaError("InvalidFile.Content", MSG_NO_PERSON, humanoid=False)
    if len(boxes) > 1:
        raise MediaError("InvalidFile.Content", MSG_MULTI_PERSON)
    face = _scale_box(boxes[0], small.shape[1], small.shape[0], width, height)
    if not _plausible_proportion(face, width, height):
        raise MediaError(
            "InvalidFile.BodyProportion", DETECT_MESSAGES["InvalidFile.BodyProportion"]
        )
    return FaceGuess(face_bbox=face, width=width, height=height)


def ext_box(face: BBox, *, ratio: Ratio, width: int, height: int, scale: float = 2.4) -> BBox:
    """Expand a face box to the dynamic region: exactly *ratio* (w:h), inside the image.

    The box is about *scale* face sizes across (the service's examples: 2.5 for EMO, 2.2 for
    Emoji), placed with the face a little above centre (1:1) or in the upper part (3:4),
    shrunk keeping the aspect when the image is too small, and shifted to stay inside
    ``[0, width] x [0, height]``, covering the face whenever it fits.
    """
    fx1, fy1, fx2, fy2 = face
    fw, fh = fx2 - fx1, fy2 - fy1
    aw, ah = (1, 1) if ratio == "1:1" else (3, 4)
    k = max(1, round(scale * max(fw, fh * aw / ah) / aw))
    k = min(k, width // aw, height // ah)
    w, h = k * aw, k * ah
    # Head shots centre the face a little low; half-body crops keep it in the upper third.
    cy = (fy1 + fy2) / 2 - 0.15 * fh if ratio == "1:1" else fy1 + fh / 2 + h * 0.15
    x1 = _place(round((fx1 + fx2) / 2 - w / 2), w, fx1, fx2, width)
    y1 = _place(round(cy - h / 2), h, fy1, fy2, height)
    return (x1, y1, x1 + w, y1 + h)


def _place(start: int, size: int, lo_edge: int, hi_edge: int, limit: int) -> int:
    """Clamp a box start inside [0, limit - size], covering [lo_edge, hi_edge] when it can."""
    lo, hi = max(0, hi_edge - size), min(limit - size, lo_edge)
    if lo > hi:
        lo, hi = 0, limit - size
    return min(max(start, lo), hi)


def _open_image(data: bytes) -> Image.Image:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data), formats=["JPEG", "PNG", "BMP", "WEBP"])
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError("InvalidURL", MSG_IMAGE_URL) from exc
    return img


def _small_rgb(img: Image.Image) -> Any:
    """A decoded RGB copy at most `_WORK_SIDE` pixels on its long side, as a numpy array."""
    import numpy as np
    from PIL import Image

    width, height = img.size
    factor = _WORK_SIDE / max(width, height)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    try:
        img.draft("RGB", size)  # JPEG decodes straight at a reduced scale
        small = img.convert("RGB").resize(size, Image.Resampling.BOX)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError("InvalidURL", MSG_IMAGE_URL) from exc
    return np.asarray(small, dtype=np.float32)


def _skin_mask(rgb: Any) -> Any:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # ITU-R BT.601 YCbCr, the classic skin range of Chai & Ngan, plus a floor against shadows.
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return (y >= 20) & (cb >= 77) & (cb <= 127) & (cr >= 133) & (cr <= 173)


def skin_components(rgb: Any) -> list[BBox]:
    """Bounding boxes (small-image pixels) of the significant skin components, largest first."""
    import numpy as np

    mask = _skin_mask(rgb)
    labels = _label(mask)
    ids, counts = np.unique(labels[mask], return_counts=True)
    if ids.size == 0:
        return []
    floor = max(0.002 * mask.size, 0.2 * counts.max())
    keep = [
        int(i) for i, c in sorted(zip(ids, counts, strict=True), key=lambda t: -t[1]) if c >= floor
    ]
    boxes = []
    for label in keep:
        ys, xs = np.nonzero(labels == label)
        boxes.append((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1))
    return boxes


def _label(mask: Any) -> Any:
    """4-connected component labels by min-label propagation with pointer jumping."""
    import numpy as np

    h, w = mask.shape
    big = h * w
    labels = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        prev = labels
        padded = np.pad(labels, 1, constant_values=big)
        neigh = np.minimum.reduce(
            [labels, padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        )
        labels = np.where(mask, neigh, big)
        flat = labels.ravel()
        inside = flat < big
        flat[inside] = flat[flat[inside]]  # jump to the label's own label
        if np.array_equal(labels, prev):
            return labels


def _scale_box(box: BBox, sw: int, sh: int, width: int, height: int) -> BBox:
    x1, y1, x2, y2 = box
    return (
        max(0, math.floor(x1 * width / sw)),
        max(0, math.floor(y1 * height / sh)),
        min(width, math.ceil(x2 * width / sw)),
        min(height, math.ceil(y2 * height / sh)),
    )


def _plausible_proportion(face: BBox, width: int, height: int) -> bool:
    fw, fh = face[2] - face[0], face[3] - face[1]
    short = min(width, height)
    too_small = max(fw, fh) < 0.12 * short
    too_large = fw > 0.75 * width or fh > 0.75 * height
    return not (too_small or too_large)


def probe_audio(
    data: bytes, *, max_bytes: int = MAX_AUDIO_BYTES, max_seconds: float = MAX_AUDIO_SECONDS
) -> AudioInfo:
    """Check an audio file as the service does and measure it.

    Raises `MediaError` ``InvalidURL`` with the service's message when the file is larger
    than 15 MB, not WAV/MP3 (or undecodable), or longer than 60 s.
    """
    if len(data) > max_bytes:
        raise MediaError("InvalidURL", MSG_AUDIO_BIG)
    fmt = _sniff_audio(data)
    if fmt is None:
        raise MediaError("InvalidURL", MSG_AUDIO_TYPE)
    duration = _audio_duration(data, fmt)
    if duration > max_seconds:
        raise MediaError("InvalidURL", MSG_AUDIO_LONG)
    return AudioInfo(format=fmt, duration=round(duration, 3), size=len(data))


def _sniff_audio(data: bytes) -> AudioFormat | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3":
        return "mp3"
    # An MPEG audio frame header: 11 sync bits, a valid version and layer III.
    if len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and data[1] & 0x06 == 0x02:
        return "mp3"
    return None


def _audio_duration(data: bytes, fmt: AudioFormat) -> float:
    import av

    samples, rate = 0, 0
    try:
        with av.open(io.BytesIO(data), mode="r", format=fmt) as container:
            stream = container.streams.audio[0]
            rate = stream.codec_context.sample_rate
            for frame in container.decode(stream):
                samples += frame.samples
    except (av.FFmpegError, IndexError, ValueError) as exc:
        raise MediaError("InvalidURL", MSG_AUDIO_TYPE) from exc
    if samples == 0 or not rate:
        raise MediaError("InvalidURL", MSG_AUDIO_TYPE)
    return float(samples / rate)
