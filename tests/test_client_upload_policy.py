"""Upload policy reuse: one policy per model while valid, a fresh one near its expiry."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast

import anyio
import pytest
from client_support import FAST_RETRY, account_stats, make_client, new_key, portrait

from emoclient import MemoryStore, Rates, TaskStatus
from emoclient._limits import AccountLimits
from emoclient._models import UploadPolicy
from emoclient._transport import Transport
from emoclient._upload import Uploader
from emoclient.emulator import RunningEmulator


class FakeNow:
    def __init__(self) -> None:
        self.value = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.value


async def test_policy_reused_until_margin_then_renewed(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    now = FakeNow()
    transport = Transport(
        api_key=new_key(),
        base_url=emulator.base_url,
        workspace=None,
        timeout=10.0,
        session=None,
        retry=FAST_RETRY,
    )
    limits = AccountLimits(MemoryStore(), "a", rates=Rates())
    uploader = Uploader(transport, limits.upload, margin=60.0, now=now)
    image = portrait(tmp_path)
    try:
        first = await uploader.upload(image, model="emo-v1")
        now.value += timedelta(seconds=200)  # 300 s policy, 60 s margin: still good
        await uploader.upload(image, model="emo-v1")
        await uploader.upload(image, model="emoji-v1")  # another model, another policy
        now.value += timedelta(seconds=50)  # within the margin now
        await uploader.upload(image, model="emo-v1")
    finally:
        await transport.aclose()
    assert first.expires_at == datetime(2026, 1, 3, tzinfo=UTC)
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["upload_policy"]["requests"] == 3
    assert routes["oss_upload"]["requests"] == 4


async def test_clients_on_one_key_share_the_query_budget(emulator: RunningEmulator) -> None:
    key, store = new_key(), MemoryStore()
    one = make_client(emulator, api_key=key, store=store)
    two = make_client(emulator, api_key=key, store=store)
    assert one.limits is two.limits
    statuses: list[TaskStatus] = []

    async def query(client_index: int) -> None:
        client = (one, two)[client_index % 2]
        statuses.append((await client.get_task("t")).status)

    async with one, two, anyio.create_task_group() as tg:
        for i in range(26):
            tg.start_soon(query, i)
    routes = account_stats(await emulator.stats())["routes"]
    assert len(statuses) == 26
    assert routes["task_get"]["throttled"] == 0
    assert routes["task_get"]["max_in_1s"] <= Rates().query


def test_the_default_store_is_one_object_per_process() -> None:
    from emoclient import EmoClient

    key, url = new_key(), "http://127.0.0.1:9/api/v1"
    first = EmoClient(key, base_url=url)
    second = EmoClient(key, base_url=url)
    other = EmoClient(new_key(), base_url=url)
    assert first.limits is second.limits
    assert first.limits is not other.limits


async def test_policy_expired_in_flight_is_renewed_once(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with make_client(emulator) as client:
        first = await client.upload(portrait(tmp_path), model="emo-v1")
        # The service's clock runs ahead of ours: it now considers the cached policy expired.
        emulator.advance(400)
        second = await client.upload(portrait(tmp_path), model="emo-v1")
    assert first.url != second.url
    routes = account_stats(await emulator.stats())["routes"]
    assert routes["upload_policy"]["requests"] == 2
    assert routes["oss_upload"]["requests"] == 3


async def test_cancelled_upload_closes_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class HangingTransport:
        async def post_form(
            self, url: str, form: Callable[[], AbstractAsyncContextManager[object]], **kw: object
        ) -> None:
            async with form():
                await anyio.sleep_forever()

    handles: list[BinaryIO] = []
    real_open = Path.open

    def recording_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        handles.append(handle)
        return handle

    source = tmp_path / "face.jpg"
    source.write_bytes(b"portrait")
    policy = UploadPolicy(
        model="emo-v1",
        policy="p",
        signature="s",
        upload_dir="dir",
        upload_host="https://oss.invalid",
        expire_in_seconds=300,
        oss_access_key_id="id",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    uploader = Uploader(
        cast(Transport, HangingTransport()),
        AccountLimits(MemoryStore(), "a", rates=Rates()).upload,
    )
    monkeypatch.setattr(Path, "open", recording_open)
    with anyio.move_on_after(0.05):
        await uploader._post(source, policy)
    assert len(handles) == 1
    assert handles[0].closed
