"""Rate limits: sliding real-time one-second windows per account and model, answered with 429."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import anyio
import pytest
from emulator_http import Api, Reply, emo_body, emoji_body, mask
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator._ratelimit import PeakMeter, RateLimiter

THROTTLED = {
    "request_id": "<uuid>",
    "code": "Throttling.RateQuota",
    "message": "Requests rate limit exceeded, please try again later.",
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _concurrently(count: int, call: Callable[[], Awaitable[Reply]]) -> list[int]:
    statuses: list[int] = []

    async def one() -> None:
        reply = await call()
        statuses.append(reply.status)
        if reply.status == 429:
            assert mask(reply.body) == THROTTLED

    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    return sorted(statuses)


async def test_sixth_submit_inside_one_second_is_throttled(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    api = Api(session, emulator, "sk-burst")
    body = emo_body(emulator)
    statuses = await _concurrently(6, lambda: api.submit(body))
    assert statuses == [200] * 5 + [429]
    account = next(iter((await emulator.stats())["accounts"].values()))
    assert account["submissions"] == 5
    assert account["routes"]["submit"] == {"requests": 6, "throttled": 1, "max_in_1s": 6}


async def test_each_video_model_has_its_own_submit_budget(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    api = Api(session, emulator, "sk-two-models")
    emo, emoji = emo_body(emulator), emoji_body(emulator)
    statuses: dict[str, list[int]] = {"emo": [], "emoji": []}

    async def submit(kind: str, body: dict[str, Any]) -> None:
        statuses[kind].append((await api.submit(body)).status)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(submit, "emo", emo)
        for _ in range(2):
            tg.start_soon(submit, "emoji", emoji)
    assert sorted(statuses["emo"]) == [200] * 5
    assert sorted(statuses["emoji"]) == [200, 429]  # emoji-v1: 1 per second
    account = next(iter((await emulator.stats())["accounts"].values()))
    models = account["models"]
    assert models["emo-v1"]["routes"]["submit"] == {"requests": 5, "throttled": 0, "max_in_1s": 5}
    assert models["emoji-v1"]["routes"]["submit"] == {
        "requests": 2,
        "throttled": 1,
        "max_in_1s": 2,
    }
    assert account["routes"]["submit"] == {"requests": 7, "throttled": 1, "max_in_1s": 7}


async def test_emoji_detect_is_throttled_at_the_second_call_in_a_second(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    api = Api(session, emulator, "sk-emoji-detect")
    nowhere = "http://127.0.0.1:9/nowhere.png"
    emoji = await _concurrently(2, lambda: api.detect(nowhere, model="emoji-detect-v1"))
    emo = await _concurrently(5, lambda: api.detect(nowhere, model="emo-detect-v1"))
    assert emoji == [400, 429]
    assert emo == [400] * 5  # emo-detect-v1 keeps its own 5 per second
    models = next(iter((await emulator.stats())["accounts"].values()))["models"]
    assert models["emoji-detect-v1"]["routes"]["detect"]["throttled"] == 1
    assert models["emo-detect-v1"]["routes"]["detect"]["throttled"] == 0


async def test_limits_are_per_account(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    body = emo_body(emulator)
    first = await _concurrently(5, lambda: Api(session, emulator, "sk-a").submit(body))
    second = await _concurrently(5, lambda: Api(session, emulator, "sk-b").submit(body))
    assert first == second == [200] * 5


async def test_query_limit_is_twenty_shared_by_get_and_list(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    api = Api(session, emulator, "sk-poll")
    gets = await _concurrently(15, lambda: api.task("1111"))
    lists = await _concurrently(6, lambda: api.call("GET", "/tasks"))
    assert gets == [200] * 15
    assert lists == [200] * 5 + [429]


async def test_detect_limit_is_five(
    emulator: RunningEmulator, session: aiohttp.ClientSession
) -> None:
    api = Api(session, emulator, "sk-detect")
    statuses = await _concurrently(6, lambda: api.detect("http://127.0.0.1:9/nowhere.png"))
    assert statuses == [400] * 5 + [429]


async def test_upload_policy_limit_is_per_model(session: aiohttp.ClientSession) -> None:
    limits = {"submit": 5, "query": 20, "detect": 5, "upload_policy": 3}  # 100 in production
    async with serve(EmulatorConfig.fast(rate_limits=limits)) as emulator:
        api = Api(session, emulator, "sk-up")

        def policy(model: str) -> Callable[[], Awaitable[Reply]]:
            params = {"action": "getPolicy", "model": model}
            return lambda: api.call("GET", "/uploads", params=params)

        assert await _concurrently(4, policy("emo-v1")) == [200] * 3 + [429]
        assert await _concurrently(3, policy("emoji-v1")) == [200] * 3


async def test_one_number_gives_every_model_its_own_budget(
    session: aiohttp.ClientSession,
) -> None:
    async with serve(EmulatorConfig.fast(rate_limits={"submit": 2})) as emulator:
        api = Api(session, emulator, "sk-two-each")
        emo, emoji = emo_body(emulator), emoji_body(emulator)
        assert await _concurrently(3, lambda: api.submit(emo)) == [200, 200, 429]
        assert await _concurrently(3, lambda: api.submit(emoji)) == [200, 200, 429]
        # groups left out are not limited
        assert await _concurrently(25, lambda: api.task("1111")) == [200] * 25


def test_rate_limit_lookup() -> None:
    config = EmulatorConfig()
    assert config.rate_limit("submit", "emo-v1") == 5
    assert config.rate_limit("submit", "emoji-v1") == 1
    assert config.rate_limit("detect", "emo-detect-v1") == 5
    assert config.rate_limit("detect", "emoji-detect-v1") == 1
    assert config.rate_limit("query", None) == 20
    assert config.rate_limit("upload_policy", "emoji-detect-v1") == 100
    assert config.rate_limit("submit", None) is None  # no model: the call fails anyway
    custom = EmulatorConfig(rate_limits={"detect": {"emoji-detect-v1": 3}, "query": 7})
    assert custom.rate_limit("detect", "emoji-detect-v1") == 3
    assert custom.rate_limit("detect", "emo-detect-v1") is None
    assert custom.rate_limit("submit", "emo-v1") is None
    assert custom.rate_limit("query", None) == 7


@pytest.mark.parametrize(
    ("limits", "problem"),
    [
        ({"submits": 5}, "unknown rate-limit group 'submits'"),
        ({"query": {"emo-v1": 5}}, "the query limit is the account's"),
        ({"submit": {"emo_v1": 5}}, "submit limits name unknown models ['emo_v1']"),
        ({"detect": {"emo-v1": 5}}, "detect limits name unknown models ['emo-v1']"),
        ({"submit": -1}, "greater than or equal to 0"),
    ],
)
def test_rate_limits_that_cannot_apply_are_refused(limits: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError) as error:
        EmulatorConfig(rate_limits=limits)
    assert problem in str(error.value)


def test_window_slides_in_real_time() -> None:
    limiter = RateLimiter(5)
    assert all(limiter.try_acquire(10.0 + i * 0.1) for i in range(5))
    assert not limiter.try_acquire(10.9)
    assert limiter.try_acquire(11.0)  # the event at 10.0 has left the window (10.0, 11.0]
    assert not limiter.try_acquire(11.05)


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=60))
def test_never_more_than_the_limit_in_any_one_second(times: list[float]) -> None:
    limiter = RateLimiter(5)
    admitted = [t for t in sorted(times) if limiter.try_acquire(t)]
    for start in admitted:
        assert sum(1 for t in admitted if start - 1.0 < t <= start) <= 5


def test_peak_meter_counts_the_busiest_second() -> None:
    meter = PeakMeter()
    for t in (0.0, 0.5, 0.9, 1.2, 1.3, 3.0):
        meter.record(t)
    assert meter.peak == 4  # 0.5, 0.9, 1.2, 1.3
