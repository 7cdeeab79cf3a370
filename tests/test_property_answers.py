"""Property: whatever a server answers, the client raises only its typed errors, and ends.

A tiny aiohttp server on 127.0.0.1 answers every request with the body, status, content
type and ``Retry-After`` hypothesis draws: arbitrary JSON values, arbitrary bytes, and the
documented answers with one field changed or dropped. Each draw goes through a real call
(task query, task list, submit, upload policy, detection) over HTTP with the client's
transport, retries and limits. The call must return its model or raise an
:class:`EmoError` (never ``KeyError``, ``TypeError`` or pydantic's ``ValidationError``), and
it must end well within its deadline.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emoclient import EmoClient, EmoError, MemoryStore, RetryPolicy

#: Fast retries: a drawn 429 or 5xx is retried once, a drawn Retry-After waits at most 50 ms.
RETRY = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01, max_retry_after=0.05)
#: No example may take longer than this (the client's own timeout is 5 s).
DEADLINE = 20.0

IMAGE = "https://example.com/face.jpg"
AUDIO = "https://example.com/voice.wav"

# The documented answer of each call (API.md), the starting points of the mutations.
DOCUMENTED: dict[str, Any] = {
    "task": {
        "request_id": "r-2",
        "output": {
            "task_id": "a85",
            "task_status": "SUCCEEDED",
            "submit_time": "2025-09-11 14:33:38.716",
            "end_time": "2025-09-11 14:35:51.541",
            "results": {"video_url": "http://oss.example/x.mp4?Expires=1"},
        },
        "usage": {"video_duration": 13.93, "video_ratio": "1:1"},
    },
    "list": {
        "total": 1,
        "data": [{"task_id": "t", "status": "SUCCEEDED", "gmt_create": 1709260684485}],
        "total_page": 1,
        "page_no": 1,
        "page_size": 10,
        "request_id": "r-3",
    },
    "submit": {"output": {"task_id": "a85", "task_status": "PENDING"}, "request_id": "r-1"},
    "upload": {
        "data": {
            "policy": "eyJ",
            "signature": "n3d=",
            "upload_dir": "dashscope-instant/52af",
            "upload_host": "http://127.0.0.1:9",  # the storage POST is refused at once
            "expire_in_seconds": 300,
            "max_file_size_mb": 1024,
            "oss_access_key_id": "id",
        },
        "request_id": "r-4",
    },
    "detect": {
        "output": {"check_pass": True, "face_bbox": [302, 286, 610, 593],
                   "ext_bbox": [71, 9, 840, 778]},
        "request_id": "r-5",
    },
}  # fmt: skip


@dataclass
class Answer:
    """What the server answers next."""

    body: bytes = b"{}"
    status: int = 200
    content_type: str | None = "application/json"
    retry_after: str | None = None
    requests: list[str] = field(default_factory=list)


async def _answer(request: web.Request) -> web.StreamResponse:
    answer: Answer = request.app[ANSWER]
    answer.requests.append(f"{request.method} {request.path}")
    await request.read()
    headers = {"Retry-After": answer.retry_after} if answer.retry_after is not None else {}
    response = web.Response(body=answer.body, status=answer.status, headers=headers)
    if answer.content_type is not None:
        response.content_type = answer.content_type
    return response


ANSWER = web.AppKey("answer", Answer)


@dataclass
class Server:
    portal: BlockingPortal
    base_url: str
    answer: Answer


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """The answering server, on its own event loop in a thread for the whole module."""
    answer = Answer()

    async def start() -> tuple[web.AppRunner, str]:
        app = web.Application()
        app[ANSWER] = answer
        app.router.add_route("*", "/{tail:.*}", _answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        return runner, f"http://127.0.0.1:{port}/api/v1"

    with start_blocking_portal() as portal:
        runner, base_url = portal.call(start)
        try:
            yield Server(portal, base_url, answer)
        finally:
            portal.call(runner.cleanup)


async def _task(client: EmoClient) -> object:
    return await client.get_task("a85")


async def _list(client: EmoClient) -> object:
    return [row async for page in client.list_tasks() for row in page]


async def _submit(client: EmoClient) -> object:
    return await client.submit_emo(IMAGE, AUDIO, face_bbox=(1, 1, 5, 5), ext_bbox=(0, 0, 8, 8))


async def _upload(client: EmoClient) -> object:
    return await client.upload(__file__, model="emo-v1")


async def _detect(client: EmoClient) -> object:
    return await client.detect_emo(IMAGE)


CALLS: dict[str, Callable[[EmoClient], Awaitable[object]]] = {
    "task": _task,
    "list": _list,
    "submit": _submit,
    "upload": _upload,
    "detect": _detect,
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["SUCCEEDED", "FAILED", "RUNNING", "UNKNOWN", "1:1", "r-1"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in a JSON value (the mutation points)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated(draw: st.DrawFn, call: str) -> bytes:
    """The documented answer of ``call`` with one field dropped or replaced."""
    body = copy.deepcopy(DOCUMENTED[call])
    path = draw(st.sampled_from(_paths(body)))
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return json.dumps(body).encode()


def bodies(call: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=64),
        mutated(call),
        st.sampled_from([b"", b"{", b"null", b"<html><body>502 Bad Gateway</body></html>"]),
    )


statuses = st.sampled_from([200, 200, 200, 200, 201, 204, 302, 400, 401, 403, 404, 429, 500, 503])
content_types = st.sampled_from(["application/json", "text/html", "text/plain", None])
retry_afters = st.sampled_from([None, "0", "1", "-1", "soon", "1e9", "99999999999999999999"])


def _run(server: Server, call: str) -> object:
    async def attempt() -> object:
        with anyio.fail_after(DEADLINE):
            async with EmoClient(
                "sk-property", base_url=server.base_url, retry=RETRY, store=MemoryStore(),
                timeout=5.0,
            ) as client:  # fmt: skip
                try:
                    return await CALLS[call](client)
                except EmoError as exc:
                    return exc

    return server.portal.call(attempt)


@pytest.mark.parametrize("call", sorted(CALLS))
@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_answer_gives_the_result_or_a_typed_error(
    server: Server, call: str, data: st.DataObject
) -> None:
    answer = server.answer
    answer.body = data.draw(bodies(call), label="body")
    answer.status = data.draw(statuses, label="status")
    answer.content_type = data.draw(content_types, label="content type")
    answer.retry_after = data.draw(retry_afters, label="retry-after")
    answer.requests.clear()
    outcome = _run(server, call)  # anything but an EmoError propagates and fails the test
    if isinstance(outcome, EmoError):
        assert str(outcome)  # every error says something
    else:
        # A result only from a success: a 3xx is not followed, and is an error of its own.
        assert answer.status < 300
    assert answer.requests  # the call reached the server


def test_the_documented_answers_are_results(server: Server) -> None:
    """The server serves the documented answers as results (the property is not vacuous)."""
    for call in ("task", "list", "submit", "detect"):
        server.answer.body = json.dumps(DOCUMENTED[call]).encode()
        server.answer.status, server.answer.content_type = 200, "application/json"
        server.answer.retry_after = None
        assert not isinstance(_run(server, call), EmoError), call
