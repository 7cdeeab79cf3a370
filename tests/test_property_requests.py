"""Property: the emulator answers any request to its API with a well-formed answer.

Hypothesis draws methods, paths (the API's routes, with and without suffixes, and random
ones under ``/api/v1``), query strings, headers (keys, the async header, content types)
and bodies (bytes, arbitrary JSON, request bodies with fields missing, mistyped or huge).
Every answer must be a JSON object; an error answer must be a 4xx in API.md's envelope
(``request_id``, ``code``, ``message``), never a 5xx; the server logs no error, and it
keeps serving afterwards. Methods are the ones HTTP parsers know: aiohttp refuses an
unknown method token before any application code runs.
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoclient.emulator import EmulatorConfig, serve

API = "/api/v1"
IMAGES = f"{API}/services/aigc/image2video"
ROUTES = [
    f"{IMAGES}/face-detect",
    f"{IMAGES}/video-synthesis",
    f"{API}/tasks",
    f"{API}/tasks/t-1",
    f"{API}/tasks/t-1/cancel",
    f"{API}/uploads",
]
MODELS = ["emo-v1", "emoji-v1", "emo-detect-v1", "emoji-detect-v1", "wan-v1", "", "EMO-V1"]


class _Records(logging.Handler):
    """Every ERROR record of aiohttp's and the emulator's loggers (a traceback is one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class Target:
    host: str
    port: int
    image_url: str
    audio_url: str
    errors: _Records
    files_port: int = 0
    policy: dict[str, Any] | None = None


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    """The emulator on its own event loop in a thread, with a real portrait and voice."""
    from emoclient.emulator.samples import make_portrait, make_speech

    errors = _Records()
    loggers = [logging.getLogger(name) for name in ("aiohttp", "emoclient")]
    for logger in loggers:
        logger.addHandler(errors)
    config = EmulatorConfig.fast()
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(config)) as emulator,
    ):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            image = make_portrait(Path(tmp) / "face.png", seed=1, width=480, height=640)
            audio = make_speech(Path(tmp) / "voice.wav", seconds=1.0, seed=1)
            image_url = emulator.host_file("face.png", image.read_bytes())
            audio_url = emulator.host_file("voice.wav", audio.read_bytes())
        root = urlsplit(emulator.root_url)
        assert root.hostname is not None
        assert root.port is not None
        files_port = urlsplit(emulator.files_url).port
        assert files_port is not None
        target = Target(root.hostname, root.port, image_url, audio_url, errors, files_port)
        headers = {"Authorization": "Bearer sk-property"}
        status, raw = _send(
            target, "GET", f"{API}/uploads?action=getPolicy&model=emo-v1", headers, b""
        )
        assert status == 200, raw[:300]
        target.policy = json.loads(raw)["data"]
        yield target
    for logger in loggers:
        logger.removeHandler(errors)


def _send(
    target: Target,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    *,
    port: int | None = None,
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(target.host, port or target.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def api_bodies(draw: st.DrawFn, target: Target) -> dict[str, Any]:
    """A request body of the API's shape with fields left out, mistyped or out of range."""
    url = st.sampled_from(
        [
            target.image_url,
            target.audio_url,
            "http://127.0.0.1:9/x.png",  # refused at once
            "oss://dashscope-instant/none/x.png",
            "ftp://example.com/x.png",
            "http://[::1",
            "",
        ]
    )
    box = st.lists(st.integers(-10, 5000) | st.floats() | st.text(max_size=3), max_size=5)
    fields = {
        "image_url": url,
        "audio_url": url,
        "face_bbox": box,
        "ext_bbox": box,
        "driven_id": st.sampled_from(["mengwa_kaixin", "nope", ""]) | json_values,
    }
    inputs = {name: draw(value) for name, value in fields.items() if draw(st.booleans())}
    parameters = {
        "ratio": draw(st.sampled_from(["1:1", "3:4", "4:3", ""]) | json_values),
        "style_level": draw(st.sampled_from(["normal", "calm", "active", "wild"]) | json_values),
    }
    body: dict[str, Any] = {"model": draw(st.sampled_from(MODELS) | json_values)}
    if draw(st.booleans()):
        body["input"] = inputs if draw(st.integers(0, 4)) else draw(json_values)
    if draw(st.booleans()):
        body["parameters"] = parameters if draw(st.integers(0, 4)) else draw(json_values)
    return body


@st.composite
def requests(draw: st.DrawFn, target: Target) -> tuple[str, str, dict[str, str], bytes]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    segment = st.text(max_size=12).map(lambda text: quote(text, safe=""))
    path = draw(
        st.sampled_from(ROUTES)
        | st.builds(lambda route, tail: f"{route}/{tail}", st.sampled_from(ROUTES), segment)
        | st.builds(lambda tail: f"{API}/{tail}", segment)
        | st.builds(lambda task: f"{API}/tasks/{task}", segment)
    )
    query = draw(
        st.dictionaries(
            st.sampled_from(
                ["action", "model", "page_no", "page_size", "status", "start_time",
                 "end_time", "task_id", "x"]
            ),
            st.sampled_from(["getPolicy", "emo-v1", "1", "0", "-1", "SUCCEEDED",
                             "20250101000000", "99999999999999999999"]) | st.text(max_size=8),
            max_size=4,
        )
    )  # fmt: skip
    if query:
        path += "?" + urlencode(query)
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["Bearer sk-property", "Bearer ", "Basic abc", None]))
    if auth is not None:
        headers["Authorization"] = auth
    if draw(st.booleans()):
        headers["X-DashScope-Async"] = draw(st.sampled_from(["enable", "disable", ""]))
    if draw(st.booleans()):
        headers["X-DashScope-OssResourceResolve"] = "enable"
    content_type = draw(
        st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded",
             "multipart/form-data; boundary=x", "garbage", None]
        )
    )  # fmt: skip
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = draw(
        st.one_of(
            api_bodies(target).map(lambda value: json.dumps(value).encode()),
            json_values.map(lambda value: json.dumps(value).encode()),
            st.binary(max_size=64),
            st.sampled_from([b"", b"{", b"[" * 5000 + b"]" * 5000, b'{"model": NaN}']),
        )
    )
    return method, path, headers, body


def _check(status: int, raw: bytes, method: str) -> None:
    assert status < 500, raw[:300]
    if method == "HEAD":
        return
    body = json.loads(raw)
    assert isinstance(body, dict), raw[:300]
    if status >= 400:
        assert status < 500
        for name in ("request_id", "code", "message"):
            assert isinstance(body.get(name), str), body
            assert body[name], body


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_request_gets_a_well_formed_answer(target: Target, data: st.DataObject) -> None:
    method, path, headers, body = data.draw(requests(target), label="request")
    status, raw = _send(target, method, path, headers, body)
    _check(status, raw, method)
    assert not target.errors.records, [r.getMessage() for r in target.errors.records]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        pytest.param("GET", f"{API}/nowhere", b"", 404, "NotFound", id="unknown-path"),
        pytest.param("PUT", f"{API}/tasks", b"", 405, "MethodNotAllowed", id="wrong-method"),
        pytest.param(
            "POST", f"{IMAGES}/video-synthesis", b"[" * 100_000 + b"]" * 100_000, 400,
            "InvalidParameter", id="json-nested-too-deep",
        ),
        pytest.param(
            "POST", f"{IMAGES}/face-detect", b"x" * (2 << 20), 413, "BadRequest.TooLarge",
            id="body-over-the-size-limit",
        ),
    ],
)  # fmt: skip
def test_requests_aiohttp_refuses_are_answered_in_the_envelope(
    target: Target, method: str, path: str, body: bytes, status: int, code: str
) -> None:
    headers = {
        "Authorization": "Bearer sk-property",
        "Content-Type": "application/json",
        "X-DashScope-Async": "enable",
    }
    answer_status, raw = _send(target, method, path, headers, body)
    assert answer_status == status
    _check(answer_status, raw, method)
    assert json.loads(raw)["code"] == code
    assert not target.errors.records


def test_the_emulator_keeps_serving(target: Target) -> None:
    """Runs after the garbage (file order): a plain task query still answers."""
    status, raw = _send(
        target, "GET", f"{API}/tasks/t-none", {"Authorization": "Bearer sk-property"}, b""
    )
    assert status == 200
    assert json.loads(raw)["output"]["task_status"] == "UNKNOWN"


def test_an_absurd_clock_step_is_refused_and_the_clock_still_works(target: Target) -> None:
    status, raw = _send(target, "POST", "/_emulator/clock/advance", {}, b'{"seconds": 1e308}')
    assert status == 400
    assert "1e9" in json.loads(raw)["message"]
    headers = {"Authorization": "Bearer sk-property"}
    status, raw = _send(target, "GET", f"{API}/uploads?action=getPolicy&model=emo-v1", headers, b"")
    assert status == 200, raw[:300]


# -- the second listener: the fake OSS upload host and the result host --------------------

BOUNDARY = "property-boundary"


def _multipart(fields: list[tuple[str, bytes]]) -> bytes:
    parts = []
    for name, value in fields:
        filename = '; filename="voice.wav"' if name == "file" else ""
        head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'
        parts.append(head.encode() + value + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@st.composite
def upload_forms(draw: st.DrawFn, policy: dict[str, Any]) -> bytes:
    """The client's upload form under a real policy, with fields dropped, replaced or added,
    and sometimes cut short."""
    name = draw(st.text(max_size=12).map(lambda text: text.encode("utf-8", "surrogatepass")))
    valid: dict[str, bytes] = {
        "OSSAccessKeyId": str(policy["oss_access_key_id"]).encode(),
        "Signature": str(policy["signature"]).encode(),
        "policy": str(policy["policy"]).encode(),
        "key": str(policy["upload_dir"]).encode() + b"/" + name,
        "x-oss-object-acl": b"private",
        "x-oss-forbid-overwrite": b"true",
        "success_action_status": b"200",
        "x-oss-content-type": b"audio/wav",
        "file": b"RIFF....WAVE",
    }
    fields = []
    for field, value in valid.items():
        choice = draw(st.integers(0, 5))
        if choice == 0:
            continue  # dropped
        fields.append((field, draw(st.binary(max_size=24)) if choice == 1 else value))
    fields += draw(
        st.lists(
            st.tuples(st.sampled_from(["x", "key", "file"]), st.binary(max_size=8)), max_size=2
        )
    )
    body = _multipart(fields)
    if draw(st.integers(0, 4)) == 0:
        body = body[: draw(st.integers(0, len(body)))]
    return body


def _check_oss(status: int, raw: bytes) -> None:
    assert status < 500, raw[:300]
    if status >= 400:
        assert raw.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), raw[:300]
        assert b"<Code>" in raw, raw[:300]


@pytest.mark.filterwarnings("ignore::aiohttp.BadContentDispositionHeader")
@settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_upload_form_gets_an_oss_answer(target: Target, data: st.DataObject) -> None:
    assert target.policy is not None
    body = data.draw(upload_forms(target.policy), label="form")
    content_type = data.draw(
        st.sampled_from([f"multipart/form-data; boundary={BOUNDARY}", "multipart/form-data",
                         "application/json", None])
    )  # fmt: skip
    headers = {"Content-Type": content_type} if content_type else {}
    status, raw = _send(target, "POST", "/", headers, body, port=target.files_port)
    _check_oss(status, raw)
    assert not target.errors.records, [r.getMessage() for r in target.errors.records]


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_request_to_the_files_host_gets_an_oss_answer(
    target: Target, data: st.DataObject
) -> None:
    method = data.draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
    segment = st.text(max_size=12).map(lambda text: quote(text, safe=""))
    path = data.draw(
        st.sampled_from(["/", "/results/x.mp4", "/public/face.png", "/public/none"])
        | st.builds(lambda tail: f"/results/{tail}.mp4", segment)
        | st.builds(lambda tail: f"/{tail}", segment)
    )
    query = data.draw(
        st.dictionaries(st.sampled_from(["Expires", "Signature", "OSSAccessKeyId"]),
                        st.sampled_from(["1", "-1", "abc", "99999999999999999999"]), max_size=3)
    )  # fmt: skip
    if query:
        path += "?" + urlencode(query)
    headers = {}
    if data.draw(st.booleans()):
        headers["Range"] = data.draw(st.sampled_from(["bytes=0-10", "bytes=abc", "bytes=99-1", ""]))
    status, raw = _send(target, method, path, headers, b"", port=target.files_port)
    _check_oss(status, raw)
    assert not target.errors.records, [r.getMessage() for r in target.errors.records]
