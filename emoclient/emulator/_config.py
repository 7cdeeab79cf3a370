"""Configuration of the emulator: limits, lifetimes, processing times, [I] facts and faults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator

from ._accounts import check_accounts, label_for
from ._model_names import DETECT_MODELS, SYNTHESIS_MODELS

#: Route names used in the statistics, the fault settings and the rate limits.
ROUTES = (
    "detect",
    "submit",
    "task_get",
    "task_list",
    "task_cancel",
    "upload_policy",
    "oss_upload",
    "result_download",
)


class ErrorSpec(BaseModel):
    """One error answer: HTTP status, service code and message."""

    model_config = ConfigDict(frozen=True)

    status: int
    code: str
    message: str


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
DownloadFault = Literal["html", "longer", "endless", "stall"]
#: A malformed answer: "empty" (no body), "html" (a proxy's page), "array" (JSON, not an
#: object), "empty_object" (``{}``), "wrong_types" (the real answer with every value of
#: another type), "huge" (a JSON object of 8 MiB, Content-Length announced), "endless" (a
#: chunked JSON body that never ends).
MalformedKind = Literal["empty", "html", "array", "empty_object", "wrong_types", "huge", "endless"]


class Faults(BaseModel):
    """Injected misbehaviour; changeable at run time through ``POST /_emulator/faults``."""

    # No NaN or Infinity (Python's JSON reads both): an infinite latency hangs every answer.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    #: Probability that a request to a route answers 500 InternalError / 503 ModelUnavailable.
    #: A float applies to every route, a mapping to the routes it names.
    error_rate: Probability | dict[str, Probability] = 0.0
    #: Probability that a request's connection is closed without any answer.
    drop_rate: Probability | dict[str, Probability] = 0.0
    #: Probability that a request takes effect but its answer is lost (connection closed).
    drop_after_rate: Probability | dict[str, Probability] = 0.0
    #: Real seconds added before every answer (admin routes and public files excepted).
    latency: float = Field(default=0.0, ge=0.0)
    #: Probability that a task ends FAILED with an internal algorithm error.
    task_failure_rate: Probability = 0.0
    #: Probability that a task stays RUNNING forever (and keeps the slot).
    stall_rate: Probability = 0.0
    #: When set, a result download stops after this many body bytes and the connection closes.
    download_cut_bytes: int | None = Field(default=None, ge=0)
    #: When set, every result download misbehaves: "html" answers 200 with an HTML page
    #: instead of the video, "longer" sends bytes beyond its Content-Length, "endless" streams
    #: a body that never ends, "stall" sends half of the video and then nothing.
    download_fault: DownloadFault | None = None
    #: ``{route: kind}``: the route's successful answers are replaced, after the request took
    #: effect, by a malformed 200 of that kind (see ``MalformedKind``).
    malformed: dict[str, MalformedKind] = Field(default_factory=dict)
    #: Seed of the random generator deciding which requests and tasks misbehave.
    seed: int | None = None

    def rate_for(
        self, field: Literal["error_rate", "drop_rate", "drop_after_rate"], route: str
    ) -> float:
        """The probability set for ``route`` in ``field``."""
        value = getattr(self, field)
        if isinstance(value, dict):
            return float(value.get(route, 0.0))
        return float(value)


#: The rate-limit groups and the models each counts apart: the service limits every model
#: on its own (API.md §3.1). ``None``: any model (upload policies); ``()``: the account's
#: one budget whatever the model (task queries).
RATE_GROUPS: dict[str, tuple[str, ...] | None] = {
    "submit": SYNTHESIS_MODELS,
    "detect": DETECT_MODELS,
    "query": (),
    "upload_policy": None,
}

#: Requests per second: one number for every model of a group, or ``{model: number}``.
RateLimit = NonNegativeInt | dict[str, NonNegativeInt]


def _default_rate_limits() -> dict[str, RateLimit]:
    # API.md §3.1; emoji-v1's 1/s is [I] (the Emoji table's one rate cell read for both rows).
    return {
        "submit": {"emo-v1": 5, "emoji-v1": 1},
        "detect": {"emo-detect-v1": 5, "emoji-detect-v1": 1},
        "query": 20,
        "upload_policy": 100,
    }


def _check_rate_limit(group: str, limit: RateLimit) -> None:
    if group not in RATE_GROUPS:
        raise ValueError(
            f"unknown rate-limit group {group!r}; the groups: {', '.join(RATE_GROUPS)}"
        )
    models = RATE_GROUPS[group]
    if not isinstance(limit, dict) or models is None:
        return
    if not models:
        raise ValueError(f"the {group} limit is the account's, whatever the model: give a number")
    unknown = sorted(set(limit) - set(models))
    if unknown:
        raise ValueError(f"{group} limits name unknown models {unknown}; known: {list(models)}")


class EmulatorConfig(BaseModel):
    """Everything the emulator can be told; the defaults follow API.md and DESIGN.md."""

    model_config = ConfigDict(extra="forbid")

    #: Accepted API keys and their accounts. ``None`` accepts any non-empty key as its own
    #: account; a set accepts only its keys, each its own account; ``{key: account}``
    #: accepts only its keys, and keys mapped to one account name share that account's
    #: limits, slots, tasks and uploads (a key mapped to itself is its own account).
    api_keys: frozenset[str] | dict[str, str] | None = None
    #: Virtual seconds per real second. 0 freezes the clock (only ``advance`` moves it).
    speed: float = Field(default=1.0, ge=0.0)
    #: Requests per sliding real-time second of each account, by group (see ``RATE_GROUPS``);
    #: a group left out is not limited. ``submit``, ``detect`` and ``upload_policy`` count
    #: each model apart: a number is every model's own budget, ``{model: n}`` names them
    #: (models left out are not limited). ``query`` (task get, list and cancel) is one
    #: number for the whole account. Replacing the mapping replaces every default.
    rate_limits: dict[str, RateLimit] = Field(default_factory=_default_rate_limits)
    #: Processing time of a task in virtual seconds: base + per_output_second * duration.
    processing_base_seconds: float = 30.0
    processing_per_output_second: float = 5.0
    task_ttl_seconds: float = 24 * 3600.0
    result_url_ttl_seconds: float = 24 * 3600.0
    upload_ttl_seconds: float = 48 * 3600.0
    upload_policy_ttl_seconds: int = 300
    upload_max_file_size_mb: int = 1024
    #: Which model an ``oss://`` file may be used with: exactly the one named at upload
    #: (API.md §4), or its family (an emo-v1 upload also serves emo-detect-v1).
    upload_model_binding: Literal["exact", "family"] = "exact"
    #: Render real MP4 files (needs the ``emulator`` extra: PyAV and Pillow).
    render: bool = True
    #: Where rendered results are written; a temporary directory when None.
    data_dir: Path | None = None
    #: Where content problems found after download (no face, pose, ...) surface:
    #: "task" (a FAILED task, [I] default) or "submit" (a synchronous HTTP 400).
    content_errors: Literal["task", "submit"] = "task"
    image_max_bytes: int = 10 * 1024 * 1024
    audio_max_bytes: int = 15 * 1024 * 1024
    audio_max_seconds: float = 60.0
    #: Real seconds allowed for downloading an input image or audio.
    download_timeout: float = 30.0
    # [I] facts of API.md, configurable because no source pins them.
    sync_call_error: ErrorSpec = ErrorSpec(
        status=403,
        code="AccessDenied",
        message="current user api does not support synchronous calls",
    )
    oss_without_resolve_error: ErrorSpec = ErrorSpec(
        status=400, code="InvalidURL", message="Invalid URL provided in your request."
    )
    list_page_size_cap: int = 100
    utc_offset_hours: float = 8.0
    #: Extra fields of the cancel success body besides ``request_id``.
    cancel_success_extra: dict[str, object] = Field(default_factory=dict)
    faults: Faults = Field(default_factory=Faults)

    @field_validator("api_keys")
    @classmethod
    def _accounts_apart(
        cls, keys: frozenset[str] | dict[str, str] | None
    ) -> frozenset[str] | dict[str, str] | None:
        if isinstance(keys, dict):
            check_accounts(keys)
        return keys

    @field_validator("rate_limits")
    @classmethod
    def _known_groups_and_models(cls, limits: dict[str, RateLimit]) -> dict[str, RateLimit]:
        for group, limit in limits.items():
            _check_rate_limit(group, limit)
        return limits

    def rate_limit(self, group: str, model: str | None) -> int | None:
        """Requests per second ``group`` allows ``model`` in one account; None: no limit.

        A per-model group limits no request whose model is unknown (the call fails anyway).
        """
        limit = self.rate_limits.get(group)
        if isinstance(limit, dict):
            return None if model is None else limit.get(model)
        if model is None and RATE_GROUPS.get(group) != ():
            return None
        return limit

    def account_of(self, api_key: str) -> str | None:
        """The label ``api_key``'s account is known by, or None if the key is not accepted.

        A named account is labelled by its name; a key that is its own account by
        ``account_label(key)``, a hash, so that statistics never show a key.
        """
        return label_for(self.api_keys, api_key)

    @classmethod
    def fast(cls, **overrides: Any) -> EmulatorConfig:
        """A config for tests: virtual time 1000x faster and no MP4 rendering.

        A 4-second EMO task takes 50 virtual seconds (30 + 5 per output second), 50 ms of
        real time. Pass ``render=True`` for real H.264 results, ``speed=0`` to freeze the
        clock (then only ``advance`` moves it), and any other field to override it.
        """
        settings: dict[str, Any] = {"speed": 1000.0, "render": False}
        settings.update(overrides)
        return cls(**settings)
