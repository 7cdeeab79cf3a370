"""BlockingEmoClient: the client for code that is not async, used again and again."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from client_support import new_key, portrait, speech

from emoclient import BlockingEmoClient, MemoryStore, TaskStatus
from emoclient.emulator import RunningEmulator


def _client(emulator: RunningEmulator, key: str) -> BlockingEmoClient:
    return BlockingEmoClient(
        key, base_url=emulator.base_url, store=MemoryStore(), poll_interval=0.02
    )


async def test_sync_code_calls_it_repeatedly_across_clients(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    key = new_key()
    image, voice = portrait(tmp_path), speech(tmp_path)

    def sync_code() -> list[Path]:
        # What a script or a Django view does: plain calls, one client after another.
        made = []
        for n in range(2):
            with _client(emulator, key) as client:
                made.append(client.generate_emo(image, voice, out=tmp_path / f"emo-{n}.mp4"))
                made.append(
                    client.generate_emoji(image, "mengwa_kaixin", out=tmp_path / f"emoji-{n}.mp4")
                )
                rows = client.list_tasks(status=TaskStatus.SUCCEEDED)
                assert len(rows) == 2 * (n + 1)
                assert client.get_task(rows[0].task_id).status is TaskStatus.SUCCEEDED
        return made

    made = await anyio.to_thread.run_sync(sync_code)
    assert [p.stat().st_size > 0 for p in made] == [True] * 4


async def test_threads_share_one_client(emulator: RunningEmulator, tmp_path: Path) -> None:
    image = portrait(tmp_path)
    errors: list[BaseException] = []

    def sync_code() -> None:
        with _client(emulator, new_key()) as client:

            def upload() -> None:
                try:
                    client.upload(image, model="emo-v1")
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=upload) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)

    await anyio.to_thread.run_sync(sync_code)
    assert errors == []


async def test_a_closed_client_says_so(emulator: RunningEmulator) -> None:
    def sync_code() -> None:
        client = _client(emulator, new_key())
        client.close()
        client.close()  # twice is harmless
        with pytest.raises(RuntimeError, match="closed"):
            client.get_task("t")

    await anyio.to_thread.run_sync(sync_code)


def test_bad_settings_raise_at_once_without_leaking_a_thread() -> None:
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match="base URL"):
        BlockingEmoClient("sk-x", base_url="ftp://example.com")
    assert set(threading.enumerate()) - before == set()
