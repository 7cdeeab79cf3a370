"""The service's error answers, with the status, code and message of API.md."""

from __future__ import annotations

import uuid

from aiohttp import web

from ._config import ErrorSpec


class ApiError(Exception):
    """An error answer in the JSON envelope ``{"request_id", "code", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, spec: ErrorSpec) -> ApiError:
        """The error described by ``spec``."""
        return cls(spec.status, spec.code, spec.message)

    def response(self) -> web.Response:
        """The HTTP answer for this error."""
        return json_response(
            {"request_id": new_request_id(), "code": self.code, "message": self.message},
            status=self.status,
        )


def new_request_id() -> str:
    """A fresh request id, UUID-shaped like the service's."""
    return str(uuid.uuid4())


def json_response(body: object, *, status: int = 200) -> web.Response:
    """A JSON answer with the service's content type."""
    response = web.json_response(body, status=status)
    response.content_type = "application/json"
    response.charset = "UTF-8"
    if isinstance(body, dict) and isinstance(body.get("request_id"), str):
        response.headers["X-Request-ID"] = body["request_id"]
    return response


def _spec(status: int, code: str, message: str) -> ErrorSpec:
    return ErrorSpec(status=status, code=code, message=message)


def bad_request(message: str = "") -> ApiError:
    """400 InvalidParameter; the EMO table's generic message when none is given."""
    return ApiError(400, "InvalidParameter", message or MISSING_PARAMETERS)


MISSING_PARAMETERS = (
    "The request is missing required parameters or in a wrong format, "
    "please check the parameters that you send."
)
BODY_INVALID = "Required body invalid, please check the request body format."
STYLE_LEVEL_INVALID = "The style_level is invalid."
EXT_BBOX_INVALID = "Invalid ext_bbox."
DRIVEN_INVALID = "Driven not exist: driven_id."

INVALID_API_KEY = _spec(401, "InvalidApiKey", "Invalid API-key provided.")
EMPTY_MODEL = _spec(
    400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.'
)
MODEL_NOT_FOUND = _spec(404, "ModelNotFound", "Model can not be found.")
URL_INVALID = _spec(
    400, "InvalidURL", "Required URL is missing or invalid, please check the request URL."
)
IMAGE_URL_INVALID = _spec(
    400,
    "InvalidURL",
    "The request URL is invalid, please check the request URL is available and the request "
    "image format is one of the following types: JPEG, JPG, PNG, BMP, and WEBP.",
)
DOWNLOAD_FAILED = _spec(
    400,
    "InvalidParameter.DataInspection",
    "Unable to download the media resource during the data inspection process.",
)
AUDIO_TOO_LONG = _spec(400, "InvalidURL", "The input audio is longer than 60s!")
AUDIO_TOO_LARGE = _spec(400, "InvalidURL", "File size is larger than 15MB.")
AUDIO_TYPE = _spec(400, "InvalidURL", "File type is not supported. Allowed types are: .wav, .mp3.")
RESOLUTION = _spec(
    400,
    "InvalidFile.Resolution",
    "The image resolution is invalid, please make sure that the largest length of image is "
    "smaller than 7000, and the smallest length of image is larger than 400.",
)
TOO_DARK = _spec(
    400,
    "InvalidFile.Value",
    "The value of the image is invalid, please upload other clearer image.",
)
THROTTLED = _spec(
    429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."
)
CANCEL_REFUSED = _spec(
    400,
    "UnsupportedOperation",
    "Failed to cancel the task, please confirm if the task is in PENDING status.",
)
INTERNAL = _spec(
    500,
    "InternalError",
    "An internal error has occured, please try again later or contact service support.",
)
UNAVAILABLE = _spec(503, "ModelUnavailable", "Model is unavailable, please try again later.")
NOT_FOUND = _spec(404, "NotFound", "The requested resource does not exist, please check the URL.")
METHOD_NOT_ALLOWED = _spec(
    405, "MethodNotAllowed", "The HTTP method is not supported by this URL, please check it."
)
TOO_LARGE = _spec(413, "BadRequest.TooLarge", "The request body is too large.")


def http_error(status: int) -> ErrorSpec:
    """The service's answer to a request aiohttp refused itself with ``status``.

    Only 413 ``BadRequest.TooLarge`` is documented; the 404 and 405 codes are the
    emulator's guesses.
    """
    known = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: TOO_LARGE}
    return known.get(status) or _spec(status, "InvalidParameter", MISSING_PARAMETERS)


#: What a task that fails inside the "algorithm" reports (fault injection).
ALGO_FAILURE = ("InternalError.Algo", "An internal error occurred during model inference.")
