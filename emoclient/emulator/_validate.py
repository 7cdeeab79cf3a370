"""Validation of request bodies: shapes, enums and boxes, with the service's errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import _errors as err
from ._errors import ApiError
from ._model_names import DETECT_MODELS, SYNTHESIS_MODELS

BBox = tuple[int, int, int, int]

STYLE_LEVELS = ("normal", "calm", "active")
EMO_RATIOS = {"1:1": 1.0, "3:4": 0.75}
#: How far an ext_bbox's width/height may stray from its nominal aspect (rounding).
ASPECT_TOLERANCE = 0.02
#: The 20 Emoji templates (API.md §1.5).
DRIVEN_IDS = (
    "mengwa_kaixin",
    "mengwa_dengyan",
    "mengwa_gandong",
    "mengwa_renzhen_1",
    "mengwa_jidong",
    "mengwa_kun_1",
    "mengwa_jiaoxie",
    "dagong_kaixin",
    "dagong_yangwang",
    "dagong_kunhuo",
    "dagong_zhuakuang",
    "dagong_wunai",
    "dagong_weixiao",
    "dagong_ganji",
    "jingdian_tiaopi",
    "jingdian_deyi_1",
    "jingdian_qidai",
    "jingdian_landuo_1",
    "jingdian_xianqi",
    "jingdian_lei",
)


@dataclass(frozen=True)
class SynthesisRequest:
    """A video-synthesis body that passed the shape checks."""

    model: str
    image_url: object
    face_bbox: BBox
    ext_bbox: BBox
    audio_url: object = None
    style_level: str = "normal"
    driven_id: str | None = None

    @property
    def video_ratio(self) -> str:
        """``"1:1"``/``"3:4"`` for EMO (from the ext_bbox aspect), ``"standard"`` for Emoji."""
        if self.model == "emoji-v1":
            return "standard"
        return nearest_ratio(self.ext_bbox) or "1:1"


@dataclass(frozen=True)
class DetectRequest:
    """A face-detect body that passed the shape checks."""

    model: str
    image_url: object
    ratio: str


def model_of(body: dict[str, Any], allowed: tuple[str, ...]) -> str:
    """The body's model if this route serves it."""
    model = body.get("model")
    if model is None or model == "":
        raise ApiError.of(err.EMPTY_MODEL)
    if model not in allowed:
        raise ApiError.of(err.MODEL_NOT_FOUND)
    return str(model)


def parse_detect(body: dict[str, Any]) -> DetectRequest:
    """Check a face-detect body (API.md §1.1, §1.3)."""
    model = model_of(body, DETECT_MODELS)
    inputs = _section(body, "input", required=True)
    parameters = _section(body, "parameters", required=False)
    ratio = parameters.get("ratio", "1:1")
    allowed = EMO_RATIOS if model == "emo-detect-v1" else {"1:1": 1.0}
    if not isinstance(ratio, str) or ratio not in allowed:
        raise err.bad_request()
    return DetectRequest(model=model, image_url=inputs.get("image_url"), ratio=str(ratio))


def parse_synthesis(body: dict[str, Any]) -> SynthesisRequest:
    """Check a video-synthesis body (API.md §1.2, §1.4); unknown extra fields are tolerated."""
    model = model_of(body, SYNTHESIS_MODELS)
    inputs = _section(body, "input", required=True)
    parameters = _section(body, "parameters", required=False)
    if model == "emo-v1":
        return _parse_emo(inputs, parameters)
    return _parse_emoji(inputs)


def _parse_emo(inputs: dict[str, Any], parameters: dict[str, Any]) -> SynthesisRequest:
    face = _bbox(inputs.get("face_bbox"), err.MISSING_PARAMETERS)
    ext = _bbox(inputs.get("ext_bbox"), err.MISSING_PARAMETERS)
    if nearest_ratio(ext) is None or not contains(ext, face):
        raise err.bad_request()
    style = parameters.get("style_level", "normal")
    if style not in STYLE_LEVELS:
        raise err.bad_request(err.STYLE_LEVEL_INVALID)
    return SynthesisRequest(
        model="emo-v1",
        image_url=inputs.get("image_url"),
        audio_url=inputs.get("audio_url"),
        face_bbox=face,
        ext_bbox=ext,
        style_level=str(style),
    )


def _parse_emoji(inputs: dict[str, Any]) -> SynthesisRequest:
    face = _bbox(inputs.get("face_bbox"), err.MISSING_PARAMETERS)
    ext = _bbox(inputs.get("ext_bbox"), err.EXT_BBOX_INVALID)
    if not _has_aspect(ext, 1.0) or not contains(ext, face):
        raise err.bad_request(err.EXT_BBOX_INVALID)
    driven_id = inputs.get("driven_id")
    if driven_id is None:
        raise err.bad_request()
    if driven_id not in DRIVEN_IDS:
        raise err.bad_request(err.DRIVEN_INVALID)
    return SynthesisRequest(
        model="emoji-v1",
        image_url=inputs.get("image_url"),
        face_bbox=face,
        ext_bbox=ext,
        driven_id=str(driven_id),
    )


def _section(body: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
    value = body.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise err.bad_request()
    return value


def _bbox(value: object, message: str) -> BBox:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise err.bad_request(message)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise err.bad_request(message)
    x1, y1, x2, y2 = value
    if x1 < 0 or y1 < 0 or x2 <= x1 or y2 <= y1:
        raise err.bad_request(message)
    return (x1, y1, x2, y2)


def contains(outer: BBox, inner: BBox) -> bool:
    """Whether box ``inner`` lies inside box ``outer``."""
    return (
        outer[0] <= inner[0]
        and outer[1] <= inner[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def inside_image(box: BBox, width: int, height: int) -> bool:
    """Whether ``box`` lies inside a ``width`` x ``height`` image."""
    return box[2] <= width and box[3] <= height


def nearest_ratio(box: BBox) -> str | None:
    """The EMO ratio (``"1:1"``/``"3:4"``) ``box`` has, or None."""
    for name, aspect in EMO_RATIOS.items():
        if _has_aspect(box, aspect):
            return name
    return None


def _has_aspect(box: BBox, aspect: float) -> bool:
    width, height = box[2] - box[0], box[3] - box[1]
    return abs(width / height - aspect) <= ASPECT_TOLERANCE
