"""Temporary uploads: the policy route of the API and the fake OSS POST of the files host."""

from __future__ import annotations

import base64
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from . import _errors as err
from ._core import EmulatorState
from ._errors import ApiError, json_response, new_request_id
from ._keys import STATE, account_of
from ._results import oss_error_xml
from ._uploads import PolicyBook, StoredObject

FORM_FIELDS = ("OSSAccessKeyId", "Signature", "policy", "key", "file")


async def upload_policy(request: web.Request) -> web.Response:
    """``GET /uploads?action=getPolicy&model=...`` (API.md §4): the ``data``-wrapped policy."""
    state = request.app[STATE]
    if request.query.get("action") != "getPolicy":
        raise err.bad_request()
    model = request.query.get("model", "")
    if not model:
        raise ApiError.of(err.EMPTY_MODEL)
    data = state.policies.issue(
        account=account_of(request).label,
        model=model,
        bound_model=state.upload_model(model),
        now=state.now(),
        config=state.config,
        upload_host=state.files_url or f"{request.url.origin()}/_oss/",
    )
    return json_response({"data": data, "request_id": new_request_id()})


def oss_error(status: int, code: str, message: str) -> web.Response:
    """An OSS-style XML error answer."""
    request_id = uuid.uuid4().hex[:24].upper()
    return web.Response(
        status=status,
        text=oss_error_xml(code, message, request_id=request_id),
        content_type="application/xml",
        headers={"x-oss-request-id": request_id},
    )


async def _read_form(request: web.Request) -> dict[str, bytes]:
    form: dict[str, bytes] = {}
    if not request.headers.get("Content-Type", "").startswith("multipart/"):
        # aiohttp's reader would fail with a KeyError (a 500) on a missing content type.
        raise ValueError("multipart/form-data content type expected")
    reader = await request.multipart()
    async for part in reader:
        if isinstance(part, aiohttp.BodyPartReader) and part.name:
            form[part.name] = await part.read()
    return form


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _condition_failed(condition: object) -> web.Response:
    return oss_error(
        403,
        "AccessDenied",
        f"Invalid according to Policy: Policy Condition failed: {json.dumps(condition)}",
    )


def _check_policy(
    form: dict[str, bytes], document: dict[str, Any], now: float
) -> web.Response | None:
    """The OSS error for a form that breaks its policy, or None when it complies."""
    expiration = datetime.strptime(str(document.get("expiration")), "%Y-%m-%dT%H:%M:%S.%fZ")
    if expiration.replace(tzinfo=UTC).timestamp() <= now:
        return oss_error(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    key = form["key"].decode(errors="replace")
    for condition in document.get("conditions", []):
        if isinstance(condition, list) and condition[0] == "starts-with":
            if not key.startswith(str(condition[2])):
                return _condition_failed(condition)
        elif isinstance(condition, list) and condition[0] == "content-length-range":
            if not condition[1] <= len(form["file"]) <= condition[2]:
                return oss_error(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
                )
        elif isinstance(condition, dict):
            for name, value in condition.items():
                if name != "bucket" and form.get(name, b"").decode(errors="replace") != value:
                    return _condition_failed(condition)
    return None


async def oss_upload(request: web.Request) -> web.Response:
    """``POST /`` of the fake OSS host: a browser-style form upload under a policy."""
    state = request.app[STATE]
    book = state.policies
    try:
        form = await _read_form(request)
    except (ValueError, AssertionError, aiohttp.ClientError, HttpProcessingError) as exc:
        # HttpProcessingError: a part's headers are cut off or malformed.
        return oss_error(400, "InvalidArgument", f"The multipart form could not be read: {exc}")
    grant = book.grant_for(form.get("key", b"").decode(errors="replace"))
    if grant is not None:
        state.count(state.account(grant.account), "oss_upload", grant.model)
    missing = [name for name in FORM_FIELDS if name not in form]
    if missing:
        return oss_error(400, "InvalidArgument", f"Missing form fields: {', '.join(missing)}.")
    if not _is_utf8(form["key"]):
        return oss_error(400, "InvalidObjectName", "The specified object is not valid.")
    policy = form["policy"].decode(errors="replace")
    if not hmac.compare_digest(book.sign(policy), form["Signature"].decode(errors="replace")):
        return oss_error(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    document = json.loads(base64.b64decode(policy))
    refusal = _check_policy(form, document, state.now())
    if refusal is not None:
        return refusal
    return _store(request, state, book, form)


def _store(
    request: web.Request, state: EmulatorState, book: PolicyBook, form: dict[str, bytes]
) -> web.Response:
    key = form["key"].decode()
    grant = book.grant_for(key)
    if grant is None:
        return oss_error(403, "AccessDenied", "The upload directory was not issued by a policy.")
    now = state.now()
    if form.get("x-oss-forbid-overwrite") == b"true" and state.uploads.exists(key, now=now):
        return oss_error(
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten.",
        )
    content_type = form.get("x-oss-content-type", b"application/octet-stream").decode(
        errors="replace"
    )
    state.uploads.put(
        key,
        StoredObject(
            data=form["file"],
            account=grant.account,
            model=grant.model,
            expires_at=now + state.config.upload_ttl_seconds,
            content_type=content_type,
        ),
        now=now,
    )
    status = form.get("success_action_status", b"204").decode(errors="replace")
    return web.Response(status=200 if status == "200" else 204)
