"""Every documented HTTP error arrives as the right exception with the service's fields."""

from __future__ import annotations

import json

import pytest

from emoclient import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from emoclient._transport import error_from_response, redact_url

# (status, code, message) rows of API.md §3.4 and §3.3.
DOCUMENTED = [
    (400, "InvalidParameter", "The style_level is invalid.", BadRequestError),
    (400, "DataInspectionFailed", "Input or output data may contain inappropriate content.",
     BadRequestError),
    (400, "InvalidURL", "Invalid URL provided in your request.", BadRequestError),
    (400, "Arrearage", "Access denied, please make sure your account is in good standing.",
     BadRequestError),
    (400, "UnsupportedOperation", "Failed to cancel the task.", BadRequestError),
    (401, "InvalidApiKey", "Invalid API-key provided.", AuthenticationError),
    (403, "AccessDenied", "current user api does not support synchronous calls",
     PermissionDeniedError),
    (403, "Model.AccessDenied", "Access denied.", PermissionDeniedError),
    (404, "ModelNotFound", "Model can not be found.", NotFoundError),
    (408, "RequestTimeOut", "Request timed out.", BadRequestError),
    (413, "BadRequest.TooLarge", "Payload too large.", BadRequestError),
    (415, "BadRequest.UnsupportedFileFormat", "Unsupported file format.", BadRequestError),
    (429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.",
     RateLimitError),
    (429, "Throttling.AllocationQuota", "Allocated quota exceeded.", RateLimitError),
    (500, "InternalError", "An internal error has occured.", ServerError),
    (503, "ModelUnavailable", "Model is unavailable, please try again later.", ServerError),
]  # fmt: skip


@pytest.mark.parametrize(("status", "code", "message", "cls"), DOCUMENTED)
def test_documented_errors_map_to_their_class(
    status: int, code: str, message: str, cls: type[APIStatusError]
) -> None:
    body = json.dumps({"request_id": "rid-1", "code": code, "message": message})
    error = error_from_response(status, body, {}, operation="detect")
    assert type(error) is cls
    assert (error.status, error.code, error.message, error.request_id) == (
        status,
        code,
        message,
        "rid-1",
    )
    assert code in str(error)
    assert "rid-1" in str(error)


def test_retry_after_header_is_parsed() -> None:
    body = json.dumps({"code": "Throttling", "message": "Requests throttling triggered."})
    error = error_from_response(429, body, {"Retry-After": "2"}, operation="submit")
    assert isinstance(error, RateLimitError)
    assert error.retry_after == 2.0


def test_oss_xml_errors() -> None:
    xml = (
        "<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
        "<Message>Request has expired.</Message><RequestId>oss-1</RequestId></Error>"
    )
    error = error_from_response(403, xml, {}, operation="download")
    assert isinstance(error, PermissionDeniedError)
    assert (error.code, error.message, error.request_id) == (
        "AccessDenied",
        "Request has expired.",
        "oss-1",
    )


def test_unparseable_bodies_still_say_something() -> None:
    error = error_from_response(502, "<html>bad gateway</html>", {}, operation="query")
    assert isinstance(error, ServerError)
    assert error.code == "HTTP502"
    assert "bad gateway" in error.message
    empty = error_from_response(500, "", {"X-Request-ID": "hdr-1"}, operation="query")
    assert empty.message == "empty response body"
    assert empty.request_id == "hdr-1"


def test_signed_urls_are_redacted() -> None:
    assert redact_url("http://h/r.mp4?Expires=1&Signature=abc") == "http://h/r.mp4"
