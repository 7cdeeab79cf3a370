"""BlockingEmoClient keeps in step: options per call, copies, tasks one by one, raw answers."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from client_support import FAST_RETRY, account_stats, new_key, portrait, speech

from emoclient import BlockingEmoClient, MemoryStore, RequestTimeoutError, Timeout
from emoclient.emulator import RunningEmulator

FACE, EXT = (284, 229, 484, 429), (184, 129, 584, 529)


def _client(emulator: RunningEmulator) -> BlockingEmoClient:
    return BlockingEmoClient(
        new_key(), base_url=emulator.base_url, store=MemoryStore(), retry=FAST_RETRY
    )


async def test_blocking_calls_take_options_and_copies_share_the_loop(
    emulator: RunningEmulator,
) -> None:
    emulator.set_faults(latency=0.2)

    def sync_code() -> None:
        with _client(emulator) as client:
            with pytest.raises(RequestTimeoutError):
                client.with_options(max_retries=0).get_task("x", timeout=0.02)
            copy = client.with_options(timeout=Timeout(total=30), extra_headers={"X-Trace": "1"})
            assert copy.get_task("x", extra_headers={"X-Call": "2"}).task_id == "x"
            copy.close()  # a copy's close leaves the original running
            assert client.get_task("x").task_id == "x"
            raw = client.with_raw_response.get_task("x")
            assert raw.status == 200
            assert raw.request_id == raw.parse().request_id is not None
            assert "application/json" in raw.headers["content-type"]

    await anyio.to_thread.run_sync(sync_code)
    assert account_stats(await emulator.stats())["routes"]["task_get"]["requests"] == 4


async def test_blocking_iter_tasks_reads_page_by_page(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    image, voice = portrait(tmp_path), speech(tmp_path)

    def sync_code() -> tuple[set[str], list[str], int]:
        with _client(emulator) as client:
            image_url = client.upload(image, model="emo-v1").url
            voice_url = client.upload(voice, model="emo-v1").url
            ids = {
                client.submit_emo(image_url, voice_url, face_bbox=FACE, ext_bbox=EXT).task_id
                for _ in range(3)
            }
            rows = [row.task_id for row in client.iter_tasks(page_size=2)]
            first = next(iter(client.iter_tasks(page_size=2)))
            assert first.task_id in ids
            return ids, rows, len(client.list_tasks(timeout=10))

    ids, rows, listed = await anyio.to_thread.run_sync(sync_code)
    assert sorted(rows) == sorted(ids)
    assert listed == 3
    # Two pages for the loop, one for next() alone, one for list_tasks (page size 100).
    assert account_stats(await emulator.stats())["routes"]["task_list"]["requests"] == 4
