"""Faults no other test pins down, each a row of docs/reliability.md."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from emoclient import BatchBusyError, ConfigurationError, EmoClient, MemoryStore
from emoclient._batch.run_lock import RunLock


def test_a_second_batch_into_the_same_output_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "videos"
    first = RunLock(out_dir=out, journal=tmp_path / "a" / "journal.sqlite3")
    first.acquire()
    try:
        second = RunLock(out_dir=out, journal=tmp_path / "b" / "journal.sqlite3")
        with pytest.raises(BatchBusyError, match=r"another emoclient batch \(pid \d+\)") as caught:
            second.acquire()
        assert f"is using the output folder {out}" in str(caught.value)
        assert "wait for it to finish, or stop it (Ctrl-C)" in str(caught.value)
    finally:
        first.release()
    second.acquire()  # free again once the first is done
    second.release()


def test_a_second_batch_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    journal = tmp_path / "shared" / "journal.sqlite3"
    first = RunLock(out_dir=tmp_path / "one", journal=journal)
    first.acquire()
    try:
        second = RunLock(out_dir=tmp_path / "two", journal=journal)
        with pytest.raises(BatchBusyError, match=f"is using the journal {journal}"):
            second.acquire()
    finally:
        first.release()


@pytest.fixture
async def redirecting() -> AsyncIterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 that answers every request with a redirect to itself."""
    seen: list[str] = []

    async def loop(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        raise web.HTTPFound(location=str(request.url))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", loop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/api/v1", seen
    finally:
        await runner.cleanup()


async def test_a_base_url_that_redirects_is_a_setting_to_fix_not_a_retry(
    redirecting: tuple[str, list[str]],
) -> None:
    base_url, seen = redirecting
    async with EmoClient("sk-catalogue", base_url=base_url, store=MemoryStore()) as client:
        with pytest.raises(ConfigurationError, match="answered HTTP 302, a redirect to") as read:
            await client.get_task("t-1")
        with pytest.raises(ConfigurationError, match="does not follow redirects"):
            await client.submit_emoji(
                "https://example.com/face.png",
                driven_id="mengwa_kaixin",
                face_bbox=(1, 1, 5, 5),
                ext_bbox=(0, 0, 8, 8),
            )
    assert f"the base URL {base_url} (base_url= or DASHSCOPE_HTTP_BASE_URL)" in str(read.value)
    assert "sk-catalogue" not in str(read.value)
    assert len(seen) == 2  # one request each: neither retried nor followed
