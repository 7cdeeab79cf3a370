"""Typed models of every request and response of the EMO/Emoji protocol (see API.md).

The four models answer in different shapes; the parse functions here turn each shape into one
typed surface. Unknown extra fields are tolerated everywhere, because the service adds fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo

from emoclient import _answers as wire
from emoclient._enums import DRIVEN_IDS, DrivenId, Model, Ratio, StyleLevel
from emoclient._exceptions import DetectionFailedError

__all__ = [
    "DRIVEN_IDS",
    "VIDEO_MODELS",
    "BBox",
    "Detection",
    "DrivenId",
    "Model",
    "Ratio",
    "StyleLevel",
    "SubmittedTask",
    "Task",
    "TaskPage",
    "TaskStatus",
    "TaskSummary",
    "UploadPolicy",
    "UploadedFile",
    "VideoModel",
    "parse_bbox",
    "parse_detection",
    "parse_task_time",
    "validate_bbox",
]

# Result URLs stay valid this long after the task ends (API.md 1.2).
_RESULT_URL_TTL = 24 * 3600.0

# The service writes task times without a zone; they match Beijing time (API.md §0).
SERVICE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


class TaskStatus(StrEnum):
    """A task's ``task_status``; UNKNOWN means expired (24 h) or never existed."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    UNKNOWN = "UNKNOWN"

    @property
    def is_terminal(self) -> bool:
        """True once the status can no longer change."""
        return self in _TERMINAL


_TERMINAL = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELED, TaskStatus.UNKNOWN}
)


BBoxTuple = tuple[int, int, int, int]

_BBOX_SPLIT = re.compile(r"[\s,;]+")


def validate_bbox(value: BBoxTuple, *, name: str = "bbox") -> BBoxTuple:
    """Check an ``[x1, y1, x2, y2]`` box: non-negative, top-left above-left of bottom-right."""
    x1, y1, x2, y2 = value
    if min(value) < 0 or x1 >= x2 or y1 >= y2:
        raise ValueError(
            f"{name} {list(value)} is not [x1, y1, x2, y2] with 0 <= x1 < x2 and 0 <= y1 < y2; "
            "pass the box returned by detection"
        )
    return value


def parse_bbox(value: object, *, name: str = "bbox") -> BBoxTuple:
    """The one parser of boxes: four whole numbers as a sequence or as text.

    Accepts ``(10, 20, 300, 400)``, ``[10, 20, 300, 400]``, ``"10,20,300,400"`` or
    ``"[10 20 300 400]"``; the box is then checked by :func:`validate_bbox`. Raises
    ``ValueError`` naming ``name`` and the expected form.
    """
    if isinstance(value, str):
        parts: list[object] = [p for p in _BBOX_SPLIT.split(value.strip().strip("[]() ")) if p]
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = []
    numbers = [_whole(p) for p in parts]
    if len(numbers) != 4 or None in numbers:
        raise ValueError(
            f"{name} {value!r} must be four whole numbers x1,y1,x2,y2 (as given by detection)"
        )
    x1, y1, x2, y2 = (n for n in numbers if n is not None)
    return validate_bbox((x1, y1, x2, y2), name=name)


def _whole(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def _bbox_field(value: object, info: ValidationInfo) -> BBoxTuple:
    return parse_bbox(value, name=info.field_name or "bbox")


BBox = Annotated[BBoxTuple, BeforeValidator(_bbox_field)]
"""``(x1, y1, x2, y2)`` pixel corners in the original image."""


@dataclass(frozen=True, slots=True)
class VideoModel:
    """What differs between the portrait-video models, described once.

    The scheduler, the journal and the batch read these facts instead of branching on the
    model, so a sibling model on the same endpoints is added here (and as a job type).
    """

    name: Model
    #: The detection model whose boxes this model accepts.
    detect: Model
    #: Input fields that are files or URLs (uploaded when local), in request order.
    media: tuple[str, ...]
    #: Where the video URL sits in a task-query answer (API.md 1.2 and 1.4).
    result: tuple[str, ...]
    #: Submissions per second for the account (API.md 3.1).
    submit_rate: float
    #: Detection calls per second for the account, on :attr:`detect`.
    detect_rate: float
    #: CNY per billed second, by ratio (API.md 3.2).
    price_cny: Mapping[str, float]
    #: Tasks the account runs at once; more are accepted and queue as PENDING.
    running: int = 1
    #: Largest accepted image in bytes (None: only the generic limits apply).
    image_max_bytes: int | None = None
    #: Expected output seconds when the inputs do not say (an Emoji template's length).
    output_seconds: float | None = None


VIDEO_MODELS: Mapping[Model, VideoModel] = {
    Model.EMO: VideoModel(
        name=Model.EMO,
        detect=Model.EMO_DETECT,
        media=("image", "audio"),
        result=("output", "results", "video_url"),
        submit_rate=5.0,
        detect_rate=5.0,
        price_cny={"1:1": 0.08, "3:4": 0.16},
    ),
    Model.EMOJI: VideoModel(
        name=Model.EMOJI,
        detect=Model.EMOJI_DETECT,
        media=("image",),
        result=("output", "video_url"),
        submit_rate=1.0,
        detect_rate=1.0,
        price_cny={"1:1": 0.08},
        image_max_bytes=10 * 1024 * 1024,
        # The service does not publish each template's length; they last a few seconds.
        output_seconds=3.0,
    ),
}
"""One entry per video model (:class:`VideoModel`)."""


def parse_task_time(value: object) -> datetime | None:
    """Parse the service's ``"YYYY-MM-DD HH:mm:ss.SSS"`` (Beijing) or epoch milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:  # out of datetime's range, NaN
            raise ValueError(f"not a task time: {value!r}") from exc
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=SERVICE_TZ)
    raise ValueError(f"not a task time: {value!r}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Detection(_Model):
    """The result of emo-detect-v1 or emoji-detect-v1, in one shape.

    ``passed`` says whether the portrait can be animated; when not, ``code`` and ``message``
    say why. ``face_bbox`` / ``ext_bbox`` are what ``submit_emo`` / ``submit_emoji`` need.
    """

    model: Model
    passed: bool
    face_bbox: tuple[int, int, int, int] | None = None
    ext_bbox: tuple[int, int, int, int] | None = None
    humanoid: bool | None = None
    code: str | None = None
    message: str | None = None
    ratio: Ratio = Ratio.SQUARE
    request_id: str | None = None

    def boxes(self, *, image: str = "the image") -> tuple[BBoxTuple, BBoxTuple]:
        """``(face_bbox, ext_bbox)`` for a submit; raises DetectionFailedError if not passed."""
        if not self.passed or self.face_bbox is None or self.ext_bbox is None:
            raise DetectionFailedError(
                model=self.model.value, image=image, code=self.code, message=self.message
            )
        return self.face_bbox, self.ext_bbox


def _bbox(value: Any) -> BBoxTuple | None:
    return None if value is None else parse_bbox(value)


def parse_detection(
    body: dict[str, Any], *, model: Model, ratio: Ratio, operation: str | None = None
) -> Detection:
    """Turn either detect model's HTTP-200 body into a :class:`Detection`.

    EMO says ``check_pass`` with ``face_bbox``/``ext_bbox``; Emoji has no flag and signals a
    pass by ``bbox_face``/``ext_bbox_face`` and a failure by ``code``. Any other shape is an
    :class:`InvalidResponseError` (so is every parser's here).
    """
    with wire.parsing(body, operation or f"{model} detection") as answer:
        out = wire.member_object(answer, "output", "")
        face = _bbox(out.get("face_bbox", out.get("bbox_face")))
        ext = _bbox(out.get("ext_bbox", out.get("ext_bbox_face")))
        passed = out.get("check_pass", wire.MISSING)
        if passed is wire.MISSING:
            if not out.get("code") and (face is None or ext is None):
                raise wire.Malformed("output has neither both boxes nor a code")
            passed = not out.get("code")
        if not isinstance(passed, bool) or (passed and (face is None or ext is None)):
            raise wire.Malformed("output.check_pass is not a boolean, or true without boxes")
        return Detection(
            model=model,
            passed=passed,
            face_bbox=face,
            ext_bbox=ext,
            humanoid=out.get("humanoid"),
            code=out.get("code"),
            message=out.get("message"),
            ratio=ratio,
            request_id=wire.request_id_of(answer),
        )


class SubmittedTask(_Model):
    """The answer to a submit: the new task's id and its first status (PENDING)."""

    task_id: str
    status: TaskStatus
    model: Model
    request_id: str | None = None

    @classmethod
    def from_response(
        cls, body: dict[str, Any], *, model: Model, operation: str | None = None
    ) -> SubmittedTask:
        """Parse ``{"output": {"task_id", "task_status"}, "request_id"}``."""
        operation = operation or f"submitting a {model} task"
        with wire.parsing(body, operation, note=wire.MAY_EXIST) as answer:
            out = wire.member_object(answer, "output", "")
            return cls(
                task_id=wire.member_text(out, "task_id", "output."),
                status=out.get("task_status"),
                model=model,
                request_id=wire.request_id_of(answer),
            )


class Task(_Model):
    """One task of either model, as ``GET /tasks/{id}`` reports it.

    ``video_url`` is set once SUCCEEDED (EMO's ``results.video_url`` and Emoji's ``video_url``
    alike); ``video_duration`` is the billed seconds; ``code``/``message`` explain FAILED.
    """

    task_id: str
    status: TaskStatus
    submit_time: datetime | None = None
    scheduled_time: datetime | None = None
    end_time: datetime | None = None
    video_url: str | None = None
    video_duration: float | None = None
    video_ratio: str | None = None
    code: str | None = None
    message: str | None = None
    request_id: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the status can no longer change."""
        return self.status.is_terminal

    def url_expires_at(self) -> float:
        """Epoch seconds when ``video_url`` expires: its signed ``Expires`` parameter, else
        24 h after the task ended."""
        if self.video_url:
            expires = parse_qs(urlsplit(self.video_url).query).get("Expires")
            if expires and expires[0].isdigit():
                return float(expires[0])
        end = self.end_time or datetime.now(UTC)
        return end.timestamp() + _RESULT_URL_TTL

    @classmethod
    def from_response(cls, body: dict[str, Any], *, operation: str | None = None) -> Task:
        """Parse a task-query body of either model (EMO ``results`` or Emoji top-level URL)."""
        with wire.parsing(body, operation or "querying a task") as answer:
            out = wire.member_object(answer, "output", "")
            usage = wire.member_object(answer, "usage", "", optional=True)
            results = out.get("results")
            url = results.get("video_url") if isinstance(results, dict) else None
            task = cls(
                task_id=wire.member_text(out, "task_id", "output."),
                status=out.get("task_status"),
                submit_time=parse_task_time(out.get("submit_time")),
                scheduled_time=parse_task_time(out.get("scheduled_time")),
                end_time=parse_task_time(out.get("end_time")),
                video_url=url or out.get("video_url") or None,
                video_duration=usage.get("video_duration"),
                video_ratio=usage.get("video_ratio"),
                code=out.get("code"),
                message=out.get("message"),
                request_id=wire.request_id_of(answer),
            )
            if task.status is TaskStatus.SUCCEEDED and not task.video_url:
                raise wire.Malformed("output says SUCCEEDED but has no video_url")
            return task


class TaskSummary(_Model):
    """One row of the list API (``GET /tasks``); its times are epoch milliseconds there."""

    task_id: str
    status: TaskStatus
    model_name: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    request_id: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TaskSummary:
        """Parse one element of the list API's ``data``."""
        return cls(
            task_id=wire.member_text(row, "task_id", "data[]."),
            status=row["status"],
            model_name=row.get("model_name"),
            created_at=parse_task_time(row.get("gmt_create")),
            started_at=parse_task_time(row.get("start_time")),
            ended_at=parse_task_time(row.get("end_time")),
            request_id=row.get("request_id"),
        )


class TaskPage(_Model):
    """One page of the list API, which has its own envelope (no ``output``)."""

    tasks: list[TaskSummary]
    total: int
    total_page: int
    page_no: int
    page_size: int
    request_id: str | None = None

    @classmethod
    def from_response(cls, body: dict[str, Any], *, operation: str | None = None) -> TaskPage:
        """Parse ``{"total", "data": [...], "total_page", ...}``; no ``data`` is an error, not
        an empty page (finding the task of a lost submit depends on telling them apart)."""
        with wire.parsing(body, operation or "listing tasks") as answer:
            rows = wire.member_list(answer, "data", "")
            return cls(
                tasks=[TaskSummary.from_row(wire.as_object(row, "a row of data")) for row in rows],
                total=answer.get("total", len(rows)),
                total_page=answer.get("total_page", wire.MISSING),
                page_no=answer.get("page_no", 1),
                page_size=answer.get("page_size", len(rows)),
                request_id=wire.request_id_of(answer),
            )


class UploadPolicy(_Model):
    """A temporary-storage upload credential (``GET /uploads?action=getPolicy``).

    It is bound to ``model`` and valid until ``expires_at`` (300 s after issue).
    """

    model: str
    policy: str
    signature: str
    upload_dir: str
    upload_host: str
    expire_in_seconds: float
    max_file_size_mb: float = 1024
    oss_access_key_id: str
    x_oss_object_acl: str = "private"
    x_oss_forbid_overwrite: str = "true"
    expires_at: datetime

    @classmethod
    def from_response(
        cls, body: dict[str, Any], *, model: str, issued_at: datetime, operation: str | None = None
    ) -> UploadPolicy:
        """Parse the policy answer, which is wrapped in ``data`` (not ``output``)."""
        with wire.parsing(body, operation or f"getting an upload policy for {model}") as answer:
            data = wire.member_object(answer, "data", "")
            ttl = wire.member_seconds(data, "expire_in_seconds", "data.")
            wire.member_url(data, "upload_host", "data.")
            fields = {k: data[k] for k in cls.model_fields if k in data and k not in _LOCAL_FIELDS}
            return cls(**fields, model=model, expires_at=issued_at + timedelta(seconds=ttl))


_LOCAL_FIELDS = frozenset({"model", "expires_at"})


class UploadedFile(_Model):
    """A file in temporary storage: pass ``url`` (``oss://...``) to calls of ``model``."""

    url: str
    expires_at: datetime
    model: str
