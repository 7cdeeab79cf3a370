"""Accounts: several API keys of one Alibaba Cloud account share its limits, slots and tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anyio
import pytest
from emulator_http import RESOLVE, Api, emo_body, emoji_body, upload_file, upload_policy
from pydantic import ValidationError

from emoclient.emulator import EmulatorConfig, RunningEmulator, account_label, serve
from emoclient.emulator.samples import speech_bytes

# 3 s of audio: 30 + 5 * 3 = 45 virtual seconds of processing.
TASK_SECONDS = 45.0
#: Two keys of the account "team", one key of "solo", one key that is its own account.
KEYS = {"sk-team-1": "team", "sk-team-2": "team", "sk-solo": "solo", "sk-own": "sk-own"}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.fast(speed=0.0, api_keys=KEYS)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _submit(api: Api) -> str:
    reply = await api.submit(emo_body(api.emulator, seconds=3.0))
    assert reply.status == 200, reply.body
    task_id: str = reply.body["output"]["task_id"]
    return task_id


async def _status(api: Api, task_id: str) -> str:
    status: str = (await api.task(task_id)).body["output"]["task_status"]
    return status


async def test_two_keys_of_one_account_queue_behind_one_slot(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    one, two = Api(session, emulator, "sk-team-1"), Api(session, emulator, "sk-team-2")
    first, second, third = await _submit(one), await _submit(two), await _submit(one)
    assert [await _status(two, t) for t in (first, second, third)] == [
        "RUNNING",
        "PENDING",
        "PENDING",
    ]
    emulator.advance(TASK_SECONDS)
    assert [await _status(one, t) for t in (first, second, third)] == [
        "SUCCEEDED",
        "RUNNING",
        "PENDING",
    ]
    stats = (await emulator.stats())["accounts"]
    assert set(stats) == {"team"}
    assert stats["team"]["submissions"] == 3


async def test_one_accounts_emo_and_emoji_run_side_by_side_whichever_key_sent_them(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    one, two = Api(session, emulator, "sk-team-1"), Api(session, emulator, "sk-team-2")
    emo, queued = await _submit(one), await _submit(two)
    emoji = (await two.submit(emoji_body(emulator))).body["output"]["task_id"]
    assert [await _status(one, t) for t in (emo, queued, emoji)] == [
        "RUNNING",
        "PENDING",
        "RUNNING",
    ]
    team = (await emulator.stats())["accounts"]["team"]
    assert (team["max_running"], team["max_in_flight"]) == (2, 3)
    assert team["models"]["emo-v1"]["max_in_flight"] == 2
    assert team["models"]["emoji-v1"]["max_running"] == 1


async def test_two_accounts_run_side_by_side(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    team, solo = Api(session, emulator, "sk-team-1"), Api(session, emulator, "sk-solo")
    ours, theirs = await _submit(team), await _submit(solo)
    assert await _status(team, ours) == await _status(solo, theirs) == "RUNNING"
    # another account's task is unknown to you, whichever of your keys asks
    assert await _status(Api(session, emulator, "sk-team-2"), theirs) == "UNKNOWN"
    assert await _status(solo, ours) == "UNKNOWN"


async def test_any_key_of_the_account_sees_lists_and_cancels_its_tasks(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    one, two = Api(session, emulator, "sk-team-1"), Api(session, emulator, "sk-team-2")
    running, queued = await _submit(one), await _submit(one)
    mine = await _submit(two)
    cancel = await two.call("POST", f"/tasks/{queued}/cancel")
    assert cancel.status == 200
    assert await _status(one, queued) == "CANCELED"
    listed = (await two.call("GET", "/tasks")).body
    assert [row["task_id"] for row in listed["data"]] == [mine, queued, running]
    assert {row["caller_uid"] for row in listed["data"]} == {"team"}
    key_ids = [row["api_key_id"] for row in listed["data"]]
    assert key_ids[1] == key_ids[2] != key_ids[0]
    assert not any("sk-team" in key_id for key_id in key_ids)
    by_key = await one.call("GET", "/tasks", params={"api_key_id": key_ids[0]})
    assert [row["task_id"] for row in by_key.body["data"]] == [mine]
    pending = await one.call("GET", "/tasks", params={"status": "PENDING"})
    assert [row["task_id"] for row in pending.body["data"]] == [mine]
    assert (await Api(session, emulator, "sk-solo").call("GET", "/tasks")).body["total"] == 0


async def test_the_submit_budget_adds_up_the_keys_of_the_account(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    body = emo_body(emulator)
    statuses: list[int] = []

    async def submit(key: str) -> None:
        statuses.append((await Api(session, emulator, key).submit(body)).status)

    async with anyio.create_task_group() as tg:
        for key in ("sk-team-1", "sk-team-2") * 3:
            tg.start_soon(submit, key)
        for _ in range(5):
            tg.start_soon(submit, "sk-solo")
    assert sorted(statuses) == [200] * 10 + [429]
    stats = (await emulator.stats())["accounts"]
    assert stats["team"]["routes"]["submit"]["throttled"] == 1
    assert stats["solo"]["routes"]["submit"]["throttled"] == 0


async def test_unlisted_keys_are_refused(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    for key in ("sk-stranger", "team", "acct-00000000"):
        reply = await Api(session, emulator, key).task("1111")
        assert (reply.status, reply.body["code"]) == (401, "InvalidApiKey")


async def test_named_accounts_show_their_name_and_lone_keys_a_hash(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    for key in KEYS:
        await Api(session, emulator, key).task("1111")
    labels = set((await emulator.stats())["accounts"])
    assert labels == {"team", "solo", account_label("sk-own")}


def test_config_tells_each_keys_account() -> None:
    mapped = EmulatorConfig(api_keys=KEYS)
    assert [mapped.account_of(key) for key in KEYS] == [
        "team",
        "team",
        "solo",
        account_label("sk-own"),
    ]
    assert mapped.account_of("sk-other") is None
    assert mapped.account_of("") is None
    listed = EmulatorConfig(api_keys={"sk-a", "sk-b"})
    assert listed.api_keys == frozenset({"sk-a", "sk-b"})
    assert listed.account_of("sk-a") == account_label("sk-a")
    assert listed.account_of("sk-c") is None
    assert EmulatorConfig().account_of("sk-any") == account_label("sk-any")


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ({"": "team"}, "must not be empty"),
        ({"sk-a": ""}, "must not be empty"),
        ({"sk-a": "sk-b", "sk-b": "team"}, "must not be another API key"),
        ({"sk-a": "acct-0123abcd"}, "looks like the label of a key"),
    ],
)
def test_accounts_that_could_mix_up_are_refused(keys: dict[str, str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        EmulatorConfig(api_keys=keys)


async def test_an_account_owns_its_uploads(session: aiohttp.ClientSession) -> None:
    async with serve(EmulatorConfig.fast(speed=0.0, api_keys=KEYS)) as emulator:
        one = Api(session, emulator, "sk-team-1")
        policy = await upload_policy(one)
        await upload_file(one, policy, "voice.wav", speech_bytes(seconds=2.0))
        body = emo_body(emulator)
        body["input"]["audio_url"] = f"oss://{policy['upload_dir']}/voice.wav"
        other = await Api(session, emulator, "sk-solo").submit(body, **RESOLVE)
        assert other.body["code"] == "InvalidParameter.DataInspection"
        same = await Api(session, emulator, "sk-team-2").submit(body, **RESOLVE)
        assert same.status == 200, same.body
