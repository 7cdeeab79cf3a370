"""The account's limits over the store: per-model rates, the window as leases, sharing."""

from __future__ import annotations

import anyio
import pytest

from emoclient import EmoClient, MemoryStore, Model, Rates
from emoclient._limits import AccountLimits, RateLimiter, account_id, limits_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_rate_limiter_spaces_grants_on_the_store_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(MemoryStore(clock=clock), "k", rate=5, sleep=clock.sleep)
    start = clock.now
    grants = []
    for _ in range(6):
        await limiter.acquire()
        grants.append(clock.now - start)
    assert grants == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


async def test_a_late_caller_is_spaced_from_its_actual_grant() -> None:
    # Exact at send time: a caller that comes back late takes the grant then, and the next
    # one is spaced from that moment, never bunched with it.
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    limiter = RateLimiter(store, "k", rate=5, sleep=clock.sleep)
    await limiter.acquire()
    clock.now += 0.7  # stalled
    await limiter.acquire()
    granted = clock.now
    await limiter.acquire()
    assert clock.now - granted == pytest.approx(0.2)


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(MemoryStore(), "k", rate=0)


def test_rates_are_per_model_as_the_service_has_them() -> None:
    rates = Rates()
    assert rates.submit_rate(Model.EMO) == 5.0
    assert rates.submit_rate(Model.EMOJI) == 1.0
    assert rates.detect_rate(Model.EMO_DETECT) == 5.0
    assert rates.detect_rate(Model.EMOJI_DETECT) == 1.0
    assert Rates(submit=2.0).submit_rate(Model.EMOJI) == 2.0  # one number: every model


@pytest.mark.parametrize(
    "bad",
    [{"window": 0}, {"headroom": -0.5}, {"submit": 0.0}, {"query": -1.0}, {"lease_ttl": 0.0}],
)
def test_rates_that_would_hang_or_overrun_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Rates(**bad)  # type: ignore[arg-type]


def test_an_unknown_model_in_rates_is_refused() -> None:
    with pytest.raises(ValueError, match="emo-v2"):
        Rates(submit={"emo-v2": 1.0})


async def test_each_video_model_has_its_own_window() -> None:
    limits = AccountLimits(MemoryStore(), "a", rates=Rates(window=1))
    async with limits.task_slot(Model.EMO), limits.task_slot(Model.EMOJI):
        assert await limits.tasks_in_flight(Model.EMO) == 1
        assert await limits.tasks_in_flight(Model.EMOJI) == 1
        with anyio.move_on_after(0.1) as scope:
            async with limits.task_slot(Model.EMO):
                pass
        assert scope.cancelled_caught
    assert await limits.tasks_in_flight(Model.EMO) == 0


async def test_window_admits_size_then_the_others_in_turn() -> None:
    limits = AccountLimits(MemoryStore(), "a", rates=Rates(window=2))
    order: list[int] = []
    release = anyio.Event()

    async def worker(n: int) -> None:
        async with limits.task_slot(Model.EMO):
            order.append(n)
            await release.wait()

    async with anyio.create_task_group() as tg:
        for n in range(5):
            tg.start_soon(worker, n)
            await anyio.wait_all_tasks_blocked()
        assert order == [0, 1]
        assert await limits.tasks_in_flight(Model.EMO) == 2
        release.set()
    assert order == [0, 1, 2, 3, 4]
    assert await limits.tasks_in_flight(Model.EMO) == 0


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    limits = AccountLimits(MemoryStore(), "a", rates=Rates(window=1))
    async with limits.task_slot(Model.EMO):
        with anyio.move_on_after(0.05):
            async with limits.task_slot(Model.EMO):
                pass
    with anyio.fail_after(5):
        async with limits.task_slot(Model.EMO):
            assert await limits.tasks_in_flight(Model.EMO) == 1


async def test_the_heartbeat_keeps_a_long_task_s_lease() -> None:
    limits = AccountLimits(MemoryStore(), "a", rates=Rates(window=1, lease_ttl=0.15))
    async with limits.task_slot(Model.EMO):
        await anyio.sleep(0.5)  # three lease lifetimes: only the heartbeat keeps it
        assert await limits.tasks_in_flight(Model.EMO) == 1
    assert await limits.tasks_in_flight(Model.EMO) == 0


async def test_clients_share_limits_per_account_and_store() -> None:
    store = MemoryStore()
    a1 = limits_for(store, account_id("sk-one"))
    a2 = limits_for(store, account_id("sk-one"))
    b = limits_for(store, account_id("sk-two"))
    other = limits_for(MemoryStore(), account_id("sk-one"))
    assert a1 is a2
    assert a1 is not b
    assert other is not a1


def test_keys_named_as_one_account_share_it(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    url = "http://127.0.0.1:9/api/v1"
    one = EmoClient("sk-1", base_url=url, store=store, account="prod")
    two = EmoClient("sk-2", base_url=url, store=store, account="prod")
    alone = EmoClient("sk-3", base_url=url, store=store)
    assert one.limits is two.limits
    assert alone.limits is not one.limits
    assert one.account_label == two.account_label != alone.account_label
    monkeypatch.setenv("EMOCLIENT_ACCOUNT", "prod")
    assert EmoClient("sk-4", base_url=url, store=store).limits is one.limits
    assert "sk-1" not in repr(one)
