"""Tasks: one slot and FIFO per account and model, cancel, the list API and expiry, on a frozen
clock."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from emulator_http import Api, emo_body, emoji_body, mask

from emoclient.emulator import EmulatorConfig, RunningEmulator

# 3 s of audio: 30 + 5 * 3 = 45 virtual seconds of processing.
TASK_SECONDS = 45.0


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    # Frozen: only advance() moves time. These tests are about slots, not rates: emoji-v1
    # may take 5 submissions a second here too (1 by default).
    limits = {**EmulatorConfig().rate_limits, "submit": 5}
    return EmulatorConfig.fast(speed=0.0, rate_limits=limits)


@pytest.fixture
async def api(emulator: RunningEmulator) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, emulator, "sk-tasks")


async def _submit(api: Api) -> str:
    reply = await api.submit(emo_body(api.emulator, seconds=3.0))
    assert reply.status == 200, reply.body
    task_id: str = reply.body["output"]["task_id"]
    return task_id


async def _status(api: Api, task_id: str) -> str:
    status: str = (await api.task(task_id)).body["output"]["task_status"]
    return status


async def test_one_running_task_per_account_and_model_and_fifo_order(api: Api) -> None:
    first, second, third = [await _submit(api) for _ in range(3)]
    assert [await _status(api, t) for t in (first, second, third)] == [
        "RUNNING",
        "PENDING",
        "PENDING",
    ]
    api.emulator.advance(TASK_SECONDS)
    assert [await _status(api, t) for t in (first, second, third)] == [
        "SUCCEEDED",
        "RUNNING",
        "PENDING",
    ]
    api.emulator.advance(2 * TASK_SECONDS)
    assert [await _status(api, t) for t in (first, second, third)] == ["SUCCEEDED"] * 3
    stats = (await api.emulator.stats())["accounts"]
    account = next(iter(stats.values()))
    assert account["slot_busy_seconds"] == 3 * TASK_SECONDS
    assert account["slot_span_seconds"] == 3 * TASK_SECONDS
    assert account["tasks"] == {"SUCCEEDED": 3}
    assert account["submissions"] == 3


async def test_emo_and_emoji_tasks_of_one_account_run_at_the_same_time(api: Api) -> None:
    # An Emoji template of 3 s takes as long as 3 s of EMO audio: 45 virtual seconds.
    emo = [await _submit(api) for _ in range(2)]
    emoji = [(await api.submit(emoji_body(api.emulator))).body["output"]["task_id"] for _ in "ab"]
    assert [await _status(api, t) for t in (*emo, *emoji)] == [
        "RUNNING",
        "PENDING",
        "RUNNING",
        "PENDING",
    ]
    api.emulator.advance(TASK_SECONDS)
    assert [await _status(api, t) for t in (*emo, *emoji)] == [
        "SUCCEEDED",
        "RUNNING",
        "SUCCEEDED",
        "RUNNING",
    ]
    api.emulator.advance(TASK_SECONDS)
    account = next(iter((await api.emulator.stats())["accounts"].values()))
    for model in ("emo-v1", "emoji-v1"):
        assert {k: v for k, v in account["models"][model].items() if k != "routes"} == {
            "submissions": 2,
            "tasks": {"SUCCEEDED": 2},
            "slot_busy_seconds": 2 * TASK_SECONDS,
            "slot_span_seconds": 2 * TASK_SECONDS,
            "max_in_flight": 2,
            "max_running": 1,
        }
    assert (account["max_running"], account["max_in_flight"]) == (2, 4)
    assert account["submissions"] == 4
    assert account["slot_busy_seconds"] == 4 * TASK_SECONDS  # both slots, added up
    assert account["slot_span_seconds"] == 2 * TASK_SECONDS


async def test_each_account_has_its_own_slot(emulator: RunningEmulator) -> None:
    async with aiohttp.ClientSession() as session:
        alice, bob = Api(session, emulator, "sk-alice"), Api(session, emulator, "sk-bob")
        a, b = await _submit(alice), await _submit(bob)
        assert await _status(alice, a) == "RUNNING"
        assert await _status(bob, b) == "RUNNING"
        # another account's task is unknown to you
        assert await _status(alice, b) == "UNKNOWN"


async def test_running_task_shape_has_scheduled_time_but_no_end(api: Api) -> None:
    task_id = await _submit(api)
    reply = await api.task(task_id)
    assert mask(reply.body) == {
        "request_id": "<uuid>",
        "output": {
            "task_id": "<uuid>",
            "task_status": "RUNNING",
            "submit_time": "<time>",
            "scheduled_time": "<time>",
        },
    }


async def test_times_are_beijing_time_strings(api: Api) -> None:
    from datetime import datetime, timedelta, timezone

    task_id = await _submit(api)
    api.emulator.advance(TASK_SECONDS)
    output = (await api.task(task_id)).body["output"]
    beijing = timezone(timedelta(hours=8))

    def parse(text: str) -> datetime:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=beijing)

    submitted, ended = parse(output["submit_time"]), parse(output["end_time"])
    assert (ended - submitted).total_seconds() == pytest.approx(TASK_SECONDS, abs=0.002)
    assert abs(submitted.timestamp() - api.emulator.now() + TASK_SECONDS) < 1


async def test_cancel_pending_only(api: Api) -> None:
    running, pending = await _submit(api), await _submit(api)
    reply = await api.call("POST", f"/tasks/{pending}/cancel")
    assert (reply.status, mask(reply.body)) == (200, {"request_id": "<uuid>"})
    assert await _status(api, pending) == "CANCELED"
    refused = await api.call("POST", f"/tasks/{running}/cancel")
    assert refused.status == 400
    assert mask(refused.body) == {
        "request_id": "<uuid>",
        "code": "UnsupportedOperation",
        "message": "Failed to cancel the task, please confirm if the task is in PENDING status.",
    }
    again = await api.call("POST", f"/tasks/{pending}/cancel")
    assert again.status == 400


async def test_canceled_task_frees_its_place_in_the_queue(api: Api) -> None:
    _first, second, third = [await _submit(api) for _ in range(3)]
    await api.call("POST", f"/tasks/{second}/cancel")
    api.emulator.advance(TASK_SECONDS)
    assert await _status(api, third) == "RUNNING"


async def test_task_id_expires_24_hours_after_submission(api: Api) -> None:
    task_id = await _submit(api)
    api.emulator.advance(24 * 3600 - 1)
    assert await _status(api, task_id) == "SUCCEEDED"
    api.emulator.advance(1)
    reply = await api.task(task_id)
    assert reply.status == 200
    assert mask(reply.body) == {
        "request_id": "<uuid>",
        "output": {"task_id": "<uuid>", "task_status": "UNKNOWN"},
    }


async def test_a_task_queued_past_its_expiry_never_runs(api: Api) -> None:
    # Stall the first task forever: the second waits behind it until its id expires.
    api.emulator.set_faults(stall_rate=1.0)
    stuck = await _submit(api)
    api.emulator.set_faults(stall_rate=0.0)
    waiting = await _submit(api)
    api.emulator.advance(25 * 3600)
    assert await _status(api, stuck) == "UNKNOWN"
    assert await _status(api, waiting) == "UNKNOWN"
    stats = next(iter((await api.emulator.stats())["accounts"].values()))
    assert stats["tasks"] == {"RUNNING": 1, "PENDING": 1}


async def test_list_api_shape_filters_and_pages(api: Api) -> None:
    emo = [await _submit(api) for _ in range(3)]
    emoji = (await api.submit(emoji_body(api.emulator))).body["output"]["task_id"]
    reply = await api.call("GET", "/tasks", params={"page_size": "2"})
    assert reply.status == 200
    body = reply.body
    assert {k: v for k, v in body.items() if k != "data"} == {
        "total": 4,
        "total_page": 2,
        "page_no": 1,
        "request_id": body["request_id"],
        "page_size": 2,
    }
    assert [row["task_id"] for row in body["data"]] == [emoji, emo[2]]
    row = body["data"][0]
    assert set(row) == {
        "api_key_id",
        "caller_parent_id",
        "caller_uid",
        "end_time",
        "gmt_create",
        "model_name",
        "region",
        "request_id",
        "start_time",
        "status",
        "task_id",
        "user_api_unique_key",
    }
    assert row["model_name"] == "emoji-v1"
    assert isinstance(row["gmt_create"], int)
    running = await api.call("GET", "/tasks", params={"status": "RUNNING"})
    assert [r["task_id"] for r in running.body["data"]] == [emoji, emo[0]]
    emoji_only = await api.call("GET", "/tasks", params={"model_name": "emoji-v1"})
    assert emoji_only.body["total"] == 1
    page_two = await api.call("GET", "/tasks", params={"page_size": "2", "page_no": "2"})
    assert [r["task_id"] for r in page_two.body["data"]] == [emo[1], emo[0]]


async def test_list_api_filters_by_api_key_id_and_region(api: Api) -> None:
    # The official SDK's list() sends these two filters as well.
    await _submit(api)
    key_id = (await api.call("GET", "/tasks")).body["data"][0]["api_key_id"]
    for params, total in [
        ({"api_key_id": key_id}, 1),
        ({"api_key_id": "someone-else"}, 0),
        ({"region": "cn-beijing"}, 1),
        ({"region": "ap-southeast-1"}, 0),
    ]:
        reply = await api.call("GET", "/tasks", params=params)
        assert (reply.status, reply.body["total"]) == (200, total), params


async def test_list_api_time_window_and_page_size_cap(api: Api) -> None:
    await _submit(api)
    late = await api.call("GET", "/tasks", params={"start_time": "29991231000000"})
    assert late.body["total"] == 0
    early = await api.call("GET", "/tasks", params={"end_time": "20000101000000"})
    assert early.body["total"] == 0
    capped = await api.call("GET", "/tasks", params={"page_size": "1000"})
    assert capped.body["page_size"] == 100
    bad = await api.call("GET", "/tasks", params={"start_time": "yesterday"})
    assert bad.status == 400


@pytest.mark.parametrize("page_no", ["0", "-1", "two", "\u00b2"])
async def test_list_api_refuses_a_bad_page_number(api: Api, page_no: str) -> None:
    reply = await api.call("GET", "/tasks", params={"page_no": page_no})
    assert reply.status == 400
    assert reply.body["code"] == "InvalidParameter"


async def test_task_failure_fault(api: Api) -> None:
    api.emulator.set_faults(task_failure_rate=1.0)
    task_id = await _submit(api)
    api.emulator.advance(TASK_SECONDS)
    output = (await api.task(task_id)).body["output"]
    assert output["task_status"] == "FAILED"
    assert output["code"] == "InternalError.Algo"
