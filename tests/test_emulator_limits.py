"""Rate limits: sliding real-time one-second windows per account, answered with 429."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import anyio
import pytest
from emulator_http import Api, Reply, emo_body, mask
from hypothesis import given
from hypothesis import strategies as st

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
