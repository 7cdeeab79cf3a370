"""What the service answered: errors from error answers, JSON objects from the others, and
one typed error (:class:`InvalidResponseError`) for answers not in the documented shape.

Pure functions, no I/O: the transport reads the bytes, the models check the fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from emoclient._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from emoclient._retry import parse_retry_after

__all__ = [
    "MAY_EXIST",
    "MISSING",
    "Malformed",
    "as_object",
    "decode",
    "error_from_response",
    "invalid_response",
    "json_object",
    "member_list",
    "member_object",
    "member_seconds",
    "member_text",
    "member_url",
    "parsing",
    "redact_url",
    "request_id_of",
    "scrub_urls",
]

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}
_XML_FIELD = re.compile(r"<(Code|Message|RequestId)>(.*?)</\1>", re.S)
_QUERY = re.compile(r"""([a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'"]*)\?[^\s#'"]*""")
#: What ``dict.get`` gives for a field that is not there (``None`` is JSON's null).
MISSING: Any = object()
#: The note of a malformed answer to a submit.
MAY_EXIST = "; a task may have been created: look with list_tasks() before resubmitting"


def _error_fields(status: int, text: str) -> tuple[str, str, str | None]:
    """``(code, message, request_id)`` from a JSON or OSS-XML error body."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        code = str(body.get("code") or f"HTTP{status}")
        message = str(body.get("message") or "no message")
        return code, message, request_id_of(body)
    xml = dict(_XML_FIELD.findall(text))
    if xml:
        return xml.get("Code", f"HTTP{status}"), xml.get("Message", ""), xml.get("RequestId")
    return f"HTTP{status}", text[:200] or "empty response body", None


def error_from_response(
    status: int, text: str, headers: Mapping[str, str], *, operation: str
) -> APIStatusError:
    """The typed error for an HTTP error answer (JSON envelope or OSS XML)."""
    code, message, request_id = _error_fields(status, text)
    request_id = request_id or headers.get("X-Request-ID")
    if status == 429:
        return RateLimitError(
            status,
            code=code,
            message=message,
            request_id=request_id,
            operation=operation,
            retry_after=parse_retry_after(headers.get("Retry-After")),
        )
    cls = ServerError if status >= 500 else _STATUS_ERRORS.get(status, BadRequestError)
    return cls(status, code=code, message=message, request_id=request_id, operation=operation)


def invalid_response(
    problem: str, *, operation: str, request_id: str | None, status: int = 200
) -> InvalidResponseError:
    """The error for an answer that is not in the documented shape."""
    return InvalidResponseError(
        status, code="InvalidResponse", message=problem, request_id=request_id, operation=operation
    )


def redact_url(url: str) -> str:
    # Signed result URLs carry credentials in the query string; keep them out of messages.
    return url.split("?", 1)[0]


def scrub_urls(text: str) -> str:
    """``text`` with the query string of every URL in it removed (see :func:`redact_url`)."""
    return _QUERY.sub(r"\1", text)


def decode(raw: bytes, charset: str | None) -> str:
    """``raw`` as text in ``charset`` (UTF-8 when unknown), never failing."""
    try:
        return raw.decode(charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def request_id_of(body: object) -> str | None:
    """The ``request_id`` of a JSON answer, if it has a string one."""
    value = body.get("request_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else None


def _refuse_constant(name: str) -> float:
    # Python's json reads NaN and Infinity, which are not JSON.
    raise ValueError(f"{name} is not JSON")


def json_object(
    raw: bytes, *, complete: bool, limit: int, status: int, operation: str, request_id: str | None
) -> dict[str, Any]:
    """The JSON object of a success answer; ``complete`` is False when the body was longer
    than ``limit`` bytes (and not read further)."""

    def invalid(problem: str) -> InvalidResponseError:
        return invalid_response(problem, operation=operation, request_id=request_id, status=status)

    if not complete:
        raise invalid(
            f"the answer is larger than {limit / 2**20:g} MiB (EMOCLIENT_MAX_JSON_MB) and was "
            "not read"
        )
    if not raw.strip():
        raise invalid("the answer is empty")
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise invalid(f"the answer is not JSON: {decode(raw[:120], None)!r}") from exc
    if not isinstance(body, dict):
        raise invalid(f"the answer is JSON but not an object: {_kind(body)}")
    return body


class Malformed(ValueError):
    """A field of an answer is missing or of the wrong type."""


def _kind(value: object) -> str:
    if value is MISSING:
        return "missing"
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), "a number")


def as_object(value: object, where: str) -> dict[str, Any]:
    """``value`` if it is a JSON object."""
    if not isinstance(value, dict):
        raise Malformed(f"{where} is {_kind(value)}, not an object")
    return value


def member_object(
    container: Mapping[str, Any], key: str, where: str, *, optional: bool = False
) -> dict[str, Any]:
    """``container[key]`` if it is a JSON object (``{}`` if ``optional`` and null/missing)."""
    value = container.get(key, MISSING)
    if optional and (value is MISSING or value is None):
        return {}
    return as_object(value, f"{where}{key}")


def member_list(container: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """``container[key]`` if it is a JSON array."""
    value = container.get(key, MISSING)
    if not isinstance(value, list):
        raise Malformed(f"{where}{key} is {_kind(value)}, not a list")
    return value


def member_seconds(container: Mapping[str, Any], key: str, where: str) -> float:
    """``container[key]`` if it is a number of seconds above 0 and at most a week."""
    value = container.get(key, MISSING)
    seconds = value if isinstance(value, int | float) and not isinstance(value, bool) else 0
    if not 0 < seconds <= 7 * 24 * 3600:
        raise Malformed(f"{where}{key} is {_kind(value)} {value!r:.40}, not a lifetime in seconds")
    return float(seconds)


def member_url(container: Mapping[str, Any], key: str, where: str) -> str:
    """``container[key]`` if it is an http(s) URL."""
    value = member_text(container, key, where)
    if not value.startswith(("https://", "http://")):
        raise Malformed(f"{where}{key} is not an http(s) URL")
    return value


def member_text(container: Mapping[str, Any], key: str, where: str) -> str:
    """``container[key]`` if it is a non-empty string."""
    value = container.get(key, MISSING)
    if not isinstance(value, str) or not value:
        raise Malformed(f"{where}{key} is {_kind(value) if value != '' else 'empty'}, not text")
    return value


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        return f"the answer's {where} is invalid: {first['msg']}"[:300]
    if isinstance(exc, KeyError):
        return f"the answer lacks the field {exc.args[0]!r}"
    return str(exc)[:300]


@contextmanager
def parsing(body: object, operation: str, *, note: str = "") -> Iterator[dict[str, Any]]:
    """``body`` as a JSON object; a missing or mistyped field met in the block becomes an
    :class:`InvalidResponseError` naming ``operation`` and the answer's request id.

    ``note`` is added to its message (e.g. what the caller should check next).
    """
    try:
        if not isinstance(body, dict):
            raise Malformed(f"the answer is {_kind(body)}, not an object")
        yield body
    except (KeyError, TypeError, ValueError) as exc:  # ValidationError is a ValueError
        problem = _problem(exc) + note
        raise invalid_response(
            problem, operation=operation, request_id=request_id_of(body)
        ) from exc
