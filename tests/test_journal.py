from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from emoclient._batch.journal import CachedDetection, JobRecord, Journal, State
from emoclient._exceptions import JournalError


def _record(key: str = "k1") -> JobRecord:
    return JobRecord(key=key, label="row 2", model="emo-v1", output="a.mp4", state=State.NEW)


async def test_rows_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal(path) as journal:
        await journal.add(_record())
        await journal.update("k1", face_bbox=(1, 2, 3, 4), ext_bbox=(0, 0, 10, 10))
        await journal.record_intent("k1", at=123.0)
    async with Journal(path) as journal:
        row = await journal.get("k1")
        assert row is not None
        assert (row.state, row.intent_at, row.task_id) == (State.SUBMITTING, 123.0, None)
        assert row.face_bbox == (1, 2, 3, 4)
        await journal.record_submitted("k1", task_id="t-1", model="emo-v1")
        assert await journal.claimed_tasks("emo-v1") == {"t-1"}
        assert await journal.claimed_tasks("emoji-v1") == set()
        assert [
            r.key
            for r in await journal.in_state(State.SUBMITTING, State.SUBMITTED, State.SUCCEEDED)
        ] == ["k1"]
        assert await journal.counts() == {State.SUBMITTED: 1}


async def test_add_keeps_existing_row(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.add(_record())
        await journal.update("k1", state=State.DOWNLOADED, size=42)
        again = await journal.add(_record())
        assert (again.state, again.size) == (State.DOWNLOADED, 42)


async def test_caches(tmp_path: Path) -> None:
    async with Journal(tmp_path / "j.sqlite3") as journal:
        await journal.put_upload(
            "sha256:x", "emo-v1", account="acct-1", url="oss://a", expires_at=100.0
        )

        async def get(model: str, account: str, after: float) -> str | None:
            return await journal.get_upload("sha256:x", model, account=account, valid_after=after)

        assert await get("emo-v1", "acct-1", 50.0) == "oss://a"
        assert await get("emo-v1", "acct-1", 150.0) is None
        assert await get("emoji-v1", "acct-1", 50.0) is None
        assert await get("emo-v1", "acct-2", 50.0) is None  # an upload is bound to its account
        found = CachedDetection(True, (1, 1, 2, 2), (0, 0, 3, 3), None, None)
        await journal.put_detection("sha256:x", "emo-detect-v1", "1:1", found)
        assert await journal.get_detection("sha256:x", "emo-detect-v1", "1:1") == found
        assert await journal.get_detection("sha256:x", "emo-detect-v1", "3:4") is None


def _future_schema(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    _future_schema(path)
    with pytest.raises(JournalError, match="schema version 99"):
        async with Journal(path):
            pass


@pytest.fixture
def not_a_db(tmp_path: Path) -> Path:
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    return path


async def test_garbage_file_is_refused(not_a_db: Path) -> None:
    with pytest.raises(JournalError, match="move it away"):
        async with Journal(not_a_db):
            pass


@pytest.fixture
def blocked(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("a file where a folder should be")
    return tmp_path / "file" / "j.sqlite3"


async def test_unwritable_place_is_a_journal_error(blocked: Path) -> None:
    with pytest.raises(JournalError, match="writable output folder"):
        async with Journal(blocked):
            pass
