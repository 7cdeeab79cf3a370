"""GCRA rate limiting and the in-flight window, driven by a fake clock."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoclient._limits import (
    InMemoryLimitsBackend,
    LimitRegistry,
    RateLimiter,
    Rates,
    account_id,
    gcra_reserve,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_gcra_spaces_grants_without_burst() -> None:
    tat, now = 0.0, 10.0
    delays = []
    for _ in range(3):
        delay, tat = gcra_reserve(tat, now, interval=0.2)
        delays.append(delay)
    assert delays == pytest.approx([0.0, 0.2, 0.4])
    # After idling, no credit accumulates: the next grant is immediate but only one.
    delay, tat = gcra_reserve(tat, 100.0, interval=0.2)
    assert delay == 0.0
    delay, tat = gcra_reserve(tat, 100.0, interval=0.2)
    assert delay == pytest.approx(0.2)


async def test_rate_limiter_with_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(InMemoryLimitsBackend(clock=clock), "k", rate=5, sleep=clock.sleep)
    start = clock.now
    grants = []
    for _ in range(6):
        await limiter.acquire()
        grants.append(clock.now - start)
    assert grants == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(InMemoryLimitsBackend(), "k", rate=0)


@settings(max_examples=200, deadline=None)
@given(
    rate=st.integers(min_value=1, max_value=100),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=300),
)
def test_never_more_than_rate_grants_in_any_one_second_window(rate: int, gaps: list[float]) -> None:
    clock = FakeClock()
    grants = []
    interval = (1.0 + Rates().headroom) / rate
    tat = 0.0
    for gap in gaps:
        clock.now += gap
        delay, tat = gcra_reserve(tat or clock.now, clock.now, interval=interval)
        grants.append(clock.now + delay)
    grants.sort()
    for i, start in enumerate(grants):
        in_window = sum(1 for g in grants[i:] if g < start + 1.0)
        assert in_window <= rate


async def test_backend_never_exceeds_rate_in_any_window_concurrently() -> None:
    clock = FakeClock()
    backend = InMemoryLimitsBackend(clock=clock)
    limiter = RateLimiter(backend, "q", rate=20, headroom=0.05, sleep=clock.sleep)
    grants: list[float] = []
    for _ in range(100):
        delay = await backend.reserve("q", interval=limiter.interval)
        grants.append(clock.now + delay)
    for i, start in enumerate(grants):
        assert sum(1 for g in grants[i:] if g < start + 1.0) <= 20


async def test_window_admits_size_then_queues_in_order() -> None:
    backend = InMemoryLimitsBackend()
    order: list[int] = []
    release = anyio.Event()

    async def worker(n: int) -> None:
        await backend.acquire_slot("w", size=2)
        order.append(n)
        try:
            await release.wait()
        finally:
            await backend.release_slot("w")

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(worker, n)
            await anyio.wait_all_tasks_blocked()
        assert order == [0, 1]
        assert backend.held("w") == 2
        release.set()
    assert order == [0, 1, 2, 3, 4]
    assert backend.held("w") == 0


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    backend = InMemoryLimitsBackend()
    await backend.acquire_slot("w", size=1)
    with anyio.move_on_after(0):
        await backend.acquire_slot("w", size=1)
    await backend.release_slot("w")
    assert backend.held("w") == 0
    with anyio.fail_after(1):
        await backend.acquire_slot("w", size=1)
    assert backend.held("w") == 1


async def test_registry_shares_limits_per_account() -> None:
    registry = LimitRegistry()
    a1 = registry.for_account(account_id("sk-one"))
    a2 = registry.for_account(account_id("sk-one"))
    b = registry.for_account(account_id("sk-two"))
    assert a1 is a2
    assert a1 is not b
    async with a1.task_slot(), a2.task_slot():
        with anyio.move_on_after(0) as scope:
            async with a1.task_slot():
                pass
        assert scope.cancelled_caught
        async with b.task_slot():
            pass


@pytest.mark.parametrize("bad", [{"window": 0}, {"headroom": -0.5}])
def test_rates_that_would_hang_or_overrun_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Rates(**bad)  # type: ignore[arg-type]
