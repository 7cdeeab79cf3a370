"""Room on the disk, before and during a run: the output folder (and the journal's) checked for
writing and for free space against the plan before anything is paid; a disk that fills up
mid-run is one message, loses nothing, and the rerun downloads the video."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from batch_support import cli_options, make_inputs, options, total_submissions
from client_support import make_client, new_key

from emoclient import DiskFullError, JournalError
from emoclient._batch import Batch
from emoclient._batch import space as space_module
from emoclient._batch.jobs import EmoJob
from emoclient._batch.journal import State
from emoclient._batch.space import check_room
from emoclient._cli._common import BatchOptions
from emoclient._cli._run import run_batch
from emoclient.emulator import RunningEmulator
from emoclient.emulator.samples import make_portrait, make_speech

HEADER = "image,audio,driven_id,style_level,ratio,output\n"


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    make_portrait(folder / "face.png", seed=1, width=480, height=640)
    make_speech(folder / "voice.wav", seconds=1.0, seed=1)
    return folder


async def test_too_little_free_space_stops_the_run_before_anything_is_paid(
    emulator: RunningEmulator, inputs: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(HEADER + f"{inputs}/face.png,{inputs}/voice.wav,,,,v.mp4\n")
    out = tmp_path / "out"
    opts = cli_options(manifest, out, emulator, free_space=lambda folder: 5_000_000)
    assert await run_batch(opts) == 2
    message = opts.err.getvalue()  # type: ignore[attr-defined]
    assert f"not enough free space in {out}: 1 video(s) need about" in message
    assert "and 5.0 MB (5000000 bytes) are free" in message
    assert "nothing was submitted" in message
    assert total_submissions(await emulator.stats()) == 0


def test_the_journal_s_folder_is_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "journals"
    plenty = 10**12
    # On another disk, the journal's folder needs room of its own.
    monkeypatch.setattr(space_module, "_same_disk", lambda a, b: False)
    with pytest.raises(DiskFullError, match=f"not enough free space in {elsewhere}: the journal"):
        check_room(
            out,
            elsewhere / "j.sqlite3",
            video_bytes=10**6,
            jobs=10,
            free=lambda folder: plenty if folder == out else 1000,
        )
    check_room(out, elsewhere / "j.sqlite3", video_bytes=10**6, jobs=10, free=lambda f: plenty)
    # A journal's "folder" that is a file cannot take the journal.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(JournalError, match=r"cannot write into .*file.*\(--journal\)"):
        check_room(out, blocker / "j.sqlite3", video_bytes=0, jobs=1, free=lambda f: plenty)


def test_videos_already_in_the_folder_need_no_room_again(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "done.mp4").write_bytes(b"\0" * 2_000_000)
    free = space_module.SPARE_BYTES + 10 * space_module.JOURNAL_BYTES_PER_JOB + 500_000
    check_room(out, out / "j.sqlite3", video_bytes=2_400_000, jobs=10, free=lambda f: free)
    with pytest.raises(DiskFullError):
        check_room(out, out / "j.sqlite3", video_bytes=2_600_000, jobs=10, free=lambda f: free)


# -- a disk that fills up mid-run -------------------------------------------------------------


async def test_a_full_disk_mid_run_loses_nothing_and_the_rerun_downloads_it(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    images, sounds = make_inputs(tmp_path / "in", portraits=1, audios=1)
    job = EmoJob(image=images[0], audio=sounds[0], output="full.mp4", label="row 2")
    out, key = tmp_path / "out", new_key()

    async def full_disk(url: str, path: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    async def first_run() -> None:
        async with make_client(emulator, api_key=key) as client:
            client.download = full_disk  # type: ignore[method-assign]
            async with Batch(client, out_dir=out, options=options()) as batch:
                async for _ in batch.run([job]):
                    pass

    with pytest.raises(DiskFullError) as raised:
        await first_run()
    assert str(raised.value).startswith(
        f"disk full writing {out / 'full.mp4'}: free space and rerun the same command"
    )
    async with make_client(emulator, api_key=key) as client:
        async with Batch(client, out_dir=out, options=options()) as batch:
            (record,) = await batch._rows()
        assert record.state == State.SUCCEEDED
        assert record.video_url
        assert record.task_id
        # The rerun: the same batch downloads the video (its URL is still valid).
        async with Batch(client, out_dir=out, options=options()) as batch:
            results = [r async for r in batch.run([job])]
    assert [r.status for r in results] == ["succeeded"]
    assert (out / "full.mp4").stat().st_size > 0
    assert total_submissions(await emulator.stats()) == 1  # fetched, not rendered again


def _main_with(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: BaseException
) -> tuple[int, str]:
    import argparse

    from emoclient._cli import _batch as cli
    from emoclient._cli import _run

    async def failing(options: BatchOptions) -> int:
        raise error

    monkeypatch.setattr(_run, "run_batch", failing)
    args = argparse.Namespace(
        manifest=Path("m.csv"),
        out=Path("out"),
        window=None,
        journal=None,
        json=False,
        retry_failed=False,
        store=None,
        api_key_file=None,
        dry_run=False,
    )
    code = cli.main(args)
    return code, capsys.readouterr().err


def test_a_full_disk_is_one_message_however_many_downloads_hit_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    full = DiskFullError("disk full writing out/a.mp4: free space and rerun", path="out/a.mp4")
    group = ExceptionGroup("downloads", [full, ExceptionGroup("more", [full])])
    code, err = _main_with(monkeypatch, capsys, group)
    assert code == 1
    assert err.count("disk full writing out/a.mp4") == 1
    assert "Traceback" not in err
    assert "ExceptionGroup" not in err


def test_bugs_inside_a_group_are_each_a_line_never_a_group_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _main_with(
        monkeypatch, capsys, ExceptionGroup("bugs", [KeyError("k"), TypeError("t")])
    )
    assert code == 1
    assert "emoclient batch: KeyError: 'k'" in err
    assert "emoclient batch: TypeError: t" in err
    assert "please report them" in err
    # One bug alone is raised as itself (its own traceback), not wrapped in a group.
    with pytest.raises(KeyError):
        _main_with(monkeypatch, capsys, ExceptionGroup("one", [KeyError("k")]))


def test_a_full_disk_under_the_journal_or_a_file_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = JournalError("journal /v/emoclient-journal.sqlite3: database or disk is full")
    lock = OSError(errno.ENOSPC, "No space left on device", "/v/.emoclient-batch.lock")
    code, err = _main_with(monkeypatch, capsys, ExceptionGroup("full", [journal, lock]))
    assert code == 1
    assert (
        "emoclient batch: disk full writing the journal /v/emoclient-journal.sqlite3: free "
        "space and rerun the same command"
    ) in err
    assert "disk full writing /v/.emoclient-batch.lock: free space and rerun" in err
