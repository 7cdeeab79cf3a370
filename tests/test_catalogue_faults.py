"""Faults no other test pins down as a row of docs/reliability.md: two batches on one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from emoclient import BatchBusyError
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
