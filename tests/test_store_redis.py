"""The Redis store when Redis misbehaves: restarts, outages, refused logins, wrong keys."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import anyio
import anyio.to_thread
import pytest
from redis_server import RedisServer, free_port

from emoclient._exceptions import EmoError
from emoclient._store import RedisStore, StoreError, StoreUnavailableError
from emoclient._store._redis import backoff, redact_url

# The redis_server and redis_url fixtures, one server for the whole session.
pytest_plugins = ["redis_server"]


def new_prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


async def acquire(store: RedisStore, key: str, *, interval: float) -> float:
    """Ask until granted, sleeping as told; the server's time of the grant."""
    while True:
        wait, now = await store.try_acquire_at(key, interval=interval)
        if wait == 0.0:
            return now
        await anyio.sleep(wait)


class Seen(logging.Handler):
    """Sets ``event`` when the emoclient logger warns with ``text`` in the message."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.event = anyio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


@pytest.fixture
def unreachable_warning() -> Iterator[Seen]:
    handler = Seen("unreachable")
    logger = logging.getLogger("emoclient")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_the_first_grant_on_a_server_that_lost_its_data_waits_an_interval(
    redis_url: str,
) -> None:
    # A fresh server cannot tell "never used" from "restarted without persistence".
    async with RedisStore(redis_url, prefix=new_prefix()) as store:
        wait, _ = await store.try_acquire_at("submit", interval=2.0)
        assert wait == pytest.approx(2.0)


async def test_a_restart_mid_call_is_waited_out_without_a_burst(
    redis_server: RedisServer, unreachable_warning: Seen
) -> None:
    redis_server.start()
    interval, grants = 1.0, []
    async with RedisStore(redis_server.url, prefix=new_prefix(), deadline=30) as store:
        grants.append(await acquire(store, "submit", interval=interval))
        redis_server.stop()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:

                async def call() -> None:
                    grants.append(await acquire(store, "submit", interval=interval))

                group.start_soon(call)
                await unreachable_warning.event.wait()
                await anyio.to_thread.run_sync(redis_server.start)
    # The restarted server forgot the TAT; the grant is still an interval after the last.
    before, after = grants
    assert after - before >= interval


async def test_leases_lost_in_a_restart_are_taken_again(redis_server: RedisServer) -> None:
    redis_server.start()
    async with RedisStore(redis_server.url, prefix=new_prefix()) as store:
        assert await store.try_lease("w", size=1, holder="a", ttl=30)
        await anyio.to_thread.run_sync(redis_server.stop)
        await anyio.to_thread.run_sync(redis_server.start)
        assert not await store.renew_lease("w", holder="a", ttl=30)
        assert await store.try_lease("w", size=1, holder="a", ttl=30)
        assert not await store.try_lease("w", size=1, holder="b", ttl=30)


async def test_an_outage_past_the_deadline_raises_a_clear_error() -> None:
    port = free_port()  # nothing listens there
    url = f"redis://user:s3cret@127.0.0.1:{port}/0?password=hunter2"
    async with RedisStore(url, prefix=new_prefix(), deadline=0.3) as store:
        with pytest.raises(StoreUnavailableError) as caught:
            await store.try_acquire("submit", interval=0.2)
    message = str(caught.value)
    assert f"redis://user@127.0.0.1:{port}/0" in message
    assert "s3cret" not in message
    assert "hunter2" not in message
    assert "nothing was sent" in message
    assert "Start or fix Redis" in message
    assert isinstance(caught.value, EmoError)


async def test_a_refused_login_fails_at_once(redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://nobody:wrong@")
    async with RedisStore(url, prefix=new_prefix(), deadline=30) as store:
        with anyio.fail_after(10), pytest.raises(StoreError, match="refused the login") as caught:
            await store.lease_count("w")
    assert not isinstance(caught.value, StoreUnavailableError)
    assert "wrong" not in str(caught.value)


async def test_a_key_of_the_wrong_type_is_a_store_error(redis_url: str) -> None:
    import redis.asyncio as aioredis

    prefix = new_prefix()
    client = aioredis.Redis.from_url(redis_url)
    await client.hset(prefix + "lease:w", "not", "a sorted set")
    await client.aclose()
    async with RedisStore(redis_url, prefix=prefix) as store:
        with pytest.raises(StoreError, match="WRONGTYPE"):
            await store.try_lease("w", size=1, holder="a", ttl=30)


async def test_a_closed_store_says_so(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=new_prefix())
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreError, match="closed"):
        await store.lease_count("w")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://host:6379/0"),
        ("redis://bob:pw@host/2?password=pw", "redis://bob@host/2"),
        ("rediss://[::1]:6380/0", "rediss://[::1]:6380/0"),
    ],
)
def test_urls_in_messages_carry_no_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n) for n in range(7)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
