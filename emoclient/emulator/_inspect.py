"""Synchronous inspection of downloaded inputs (run in a worker thread)."""

from __future__ import annotations

from dataclasses import dataclass

from . import _errors as err
from ._errors import ApiError
from ._media import AudioInfo, MediaError, Ratio, ext_box, locate_face, probe_audio, probe_image
from ._validate import BBox, DetectRequest, SynthesisRequest, inside_image

#: Detection model whose face heuristic (and wording) a synthesis model uses.
DETECT_MODEL_OF = {"emo-v1": "emo-detect-v1", "emoji-v1": "emoji-detect-v1"}


@dataclass(frozen=True)
class DetectOutcome:
    """A detection verdict: boxes when passed, code and message when not."""

    face_bbox: BBox | None = None
    ext_bbox: BBox | None = None
    humanoid: bool = True
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class SubmitInspection:
    """What submission learned from the inputs."""

    audio: AudioInfo | None
    #: A content problem (code, message) that makes the task fail, if any.
    content_error: tuple[str, str] | None


def _as_api_error(exc: MediaError) -> ApiError:
    return ApiError(400, exc.code, exc.message)


def inspect_detect(data: bytes, request: DetectRequest, *, max_bytes: int) -> DetectOutcome:
    """Run a face-detect call on downloaded image bytes.

    Unreadable images are request errors (HTTP 400, not billed); everything else is a
    detection verdict (HTTP 200, billed).
    """
    try:
        info = probe_image(data, max_bytes=max_bytes)
        guess = locate_face(data, model=request.model)
    except MediaError as exc:
        if exc.code == "InvalidURL":
            raise _as_api_error(exc) from exc
        return DetectOutcome(humanoid=exc.humanoid, code=exc.code, message=exc.message)
    ratio: Ratio = "3:4" if request.ratio == "3:4" else "1:1"
    ext = ext_box(guess.face_bbox, ratio=ratio, width=info.width, height=info.height)
    return DetectOutcome(face_bbox=guess.face_bbox, ext_bbox=ext, humanoid=guess.humanoid)


def inspect_submission(
    request: SynthesisRequest,
    image: bytes,
    audio: bytes | None,
    *,
    image_max_bytes: int,
    audio_max_bytes: int,
    audio_max_seconds: float,
) -> SubmitInspection:
    """Check a synthesis request's inputs; raise the synchronous errors, report the rest."""
    try:
        info = probe_image(image, max_bytes=image_max_bytes)
        audio_info = (
            None
            if audio is None
            else probe_audio(audio, max_bytes=audio_max_bytes, max_seconds=audio_max_seconds)
        )
    except MediaError as exc:
        raise _as_api_error(exc) from exc
    for box in (request.face_bbox, request.ext_bbox):
        if not inside_image(box, info.width, info.height):
            raise err.bad_request(
                err.EXT_BBOX_INVALID if request.model == "emoji-v1" else err.MISSING_PARAMETERS
            )
    try:
        locate_face(image, model=DETECT_MODEL_OF[request.model])
    except MediaError as exc:
        if exc.code == "InvalidURL":
            raise _as_api_error(exc) from exc
        return SubmitInspection(audio=audio_info, content_error=(exc.code, exc.message))
    return SubmitInspection(audio=audio_info, content_error=None)
