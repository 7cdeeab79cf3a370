"""``emoclient batch`` end to end: a subprocess against an emulator running in the test.

Includes the crash test (SIGKILL mid-run, then the same command again) and the Ctrl-C test.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from emoclient import SchedulerOptions
from emoclient.emulator import EmulatorConfig, RunningEmulator, serve
from emoclient.emulator.samples import make_portrait, make_speech

HEADER = "image,audio,driven_id,style_level,ratio,output\n"
GOOD_ROWS = (
    "face1.png,voice1.wav,,,,one.mp4\n"  # row 2
    "face2.png,voice2.wav,,calm,3:4,two.mp4\n"  # row 3
    "face1.png,,mengwa_kaixin,,,three.mp4\n"  # row 4
    "face2.png,voice1.wav,,active,,four.mp4\n"  # row 5
)
GOOD_OUTPUTS = ("one.mp4", "two.mp4", "three.mp4", "four.mp4")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for i in (1, 2):
        make_portrait(folder / f"face{i}.png", seed=i, width=480, height=640)
        make_speech(folder / f"voice{i}.wav", seconds=1.0 + i / 2, seed=i)
    return folder


def _manifest(inputs: Path, tmp_path: Path, body: str) -> Path:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        HEADER + body.replace("face", f"{inputs}/face").replace("voice", f"{inputs}/voice")
    )
    return manifest


def _env(emulator: RunningEmulator, key: str = "sk-cli-test") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    return {**env, "DASHSCOPE_API_KEY": key, "DASHSCOPE_HTTP_BASE_URL": emulator.base_url}


def _command(manifest: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emoclient", "batch", str(manifest), "--out", str(out), *extra]


async def _run(command: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    with anyio.fail_after(120):
        return await anyio.run_process(command, env=env, check=False)


async def _account(emulator: RunningEmulator) -> dict[str, Any]:
    accounts: dict[str, Any] = (await emulator.stats())["accounts"]
    assert len(accounts) == 1
    return next(iter(accounts.values()))


@asynccontextmanager
async def _started(
    command: Sequence[str], env: dict[str, str], *, stderr: IO[bytes] | None = None
) -> AsyncIterator[tuple[Process, AsyncIterator[dict[str, Any]]]]:
    """Start the command; yield it with an iterator over its --json events."""
    errors = stderr if stderr is not None else subprocess.DEVNULL
    async with await anyio.open_process(command, env=env, stderr=errors) as process:
        assert process.stdout is not None

        async def events() -> AsyncIterator[dict[str, Any]]:
            assert process.stdout is not None
            buffer = ""
            async for chunk in TextReceiveStream(process.stdout):
                buffer += chunk
                *lines, buffer = buffer.split("\n")
                for line in lines:
                    yield json.loads(line)

        try:
            yield process, events()
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()


async def _until(events: AsyncIterator[dict[str, Any]], want: dict[str, int]) -> None:
    """Read events until each kind in ``want`` was seen that many times."""
    seen = dict.fromkeys(want, 0)
    with anyio.fail_after(60):
        async for event in events:
            if event["event"] in seen:
                seen[event["event"]] += 1
            if all(seen[kind] >= count for kind, count in want.items()):
                return
    raise AssertionError(f"the batch ended before these events: {want}, saw {seen}")


async def test_good_rows_render_while_bad_rows_are_reported(inputs: Path, tmp_path: Path) -> None:
    body = GOOD_ROWS + (
        "face1.png,voice1.wav,dagong_ganji,,,\n"  # row 6: both audio and driven_id
        "missing.png,,mengwa_kaixin,,,\n"  # row 7: no such file
    )
    manifest = _manifest(inputs, tmp_path, body)
    out = tmp_path / "out"
    async with serve(EmulatorConfig.fast(speed=200.0)) as emulator:
        done = await _run(_command(manifest, out, "--json"), _env(emulator))
        assert done.returncode == 1, done.stderr.decode()
        events = [json.loads(line) for line in done.stdout.decode().splitlines()]
        problems = [e for e in events if e["event"] == "manifest_problem"]
        assert [(e["label"], e["field"]) for e in problems] == [
            ("row 6", "driven_id"),
            ("row 7", "image"),
        ]
        downloaded = {Path(e["path"]).name for e in events if e["event"] == "downloaded"}
        assert downloaded == set(GOOD_OUTPUTS)
        # batch_finished, the closing summary event and the summary line count alike.
        assert [e["event"] for e in events[-2:]] == ["batch_finished", "summary"]
        assert events[-2]["counts"] == {"succeeded": 4, "invalid": 2}
        assert events[-1]["counts"] == {"succeeded": 4, "invalid": 2}
        assert events[-1]["total"] == 6
        report = done.stderr.decode()
        assert "  row 6 · invalid\n      driven_id: " in report
        assert "  row 7 · invalid\n      image: " in report
        assert "6 jobs: 4 succeeded, 2 invalid" in report
        assert "--retry-failed" not in report  # bad rows are fixed, not retried
        for name in GOOD_OUTPUTS:
            assert (out / name).stat().st_size > 0
        assert (await _account(emulator))["submissions"] == 4

        # The same command again: everything is on disk, nothing is submitted or fetched.
        again = await _run(_command(manifest, out), _env(emulator))
        assert again.returncode == 1
        assert again.stderr.decode().count("already on disk") == 4
        account = await _account(emulator)
        assert account["submissions"] == 4
        assert account["routes"]["result_download"]["requests"] == 4


async def test_sigkill_mid_run_then_rerun_submits_nothing_twice(
    inputs: Path, tmp_path: Path
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    out = tmp_path / "out"
    # A frozen clock: the first task cannot finish before the kill, whatever the machine.
    async with serve(EmulatorConfig.fast(speed=0.0)) as emulator:
        env = _env(emulator)
        async with _started(_command(manifest, out, "--json"), env) as (process, events):
            await _until(events, {"submitted": 2})
            # A second run on the same journal while the first works would submit twice.
            second = await _run(_command(manifest, out), env)
            assert second.returncode == 2
            assert b"another emoclient batch" in second.stderr
            process.send_signal(signal.SIGKILL)
            with anyio.fail_after(30):
                assert await process.wait() == -signal.SIGKILL
        # EMO and Emoji rows each have their own slot: two or more tasks were paid for.
        assert 2 <= (await _account(emulator))["submissions"] <= len(GOOD_OUTPUTS)
        assert not list(out.glob("*.mp4"))

        emulator.state.clock.set_speed(200.0)
        done = await _run(_command(manifest, out), env)
        assert done.returncode == 0, done.stderr.decode()
        assert (await _account(emulator))["submissions"] == len(GOOD_OUTPUTS)
        for name in GOOD_OUTPUTS:
            assert (out / name).stat().st_size > 0


async def test_ctrl_c_cancels_pending_tasks_and_the_rerun_finishes(
    inputs: Path, tmp_path: Path
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    out = tmp_path / "out"
    report = tmp_path / "stderr.txt"
    async with serve(EmulatorConfig.fast(speed=0.0)) as emulator:
        env = _env(emulator)
        with report.open("wb") as stderr:
            command = _command(manifest, out, "--json")
            async with _started(command, env, stderr=stderr) as (process, events):
                # EMO's slot runs one task with one queued; Emoji's slot runs its one task.
                await _until(events, {"submitted": 3, "started": 2})
                process.send_signal(signal.SIGINT)
                await _until(events, {"canceled": 1, "batch_finished": 1})
                with anyio.fail_after(30):  # a deadline, not a synchronisation
                    assert await process.wait() == 130
        text = " ".join(report.read_text().split())  # wrapped to a terminal's width
        assert "4 jobs: 2 canceled, 2 still running" in text
        assert "Run the same command again to resume." in text
        assert "Traceback" not in text
        account = await _account(emulator)
        assert account["submissions"] == 3
        assert account["tasks"] == {"RUNNING": 2, "CANCELED": 1}

        emulator.state.clock.set_speed(200.0)
        done = await _run(_command(manifest, out), env)
        assert done.returncode == 0, done.stderr.decode()
        account = await _account(emulator)
        # The RUNNING task was fetched, not resubmitted; the cancelled one ran again.
        assert account["submissions"] == len(GOOD_OUTPUTS) + 1
        assert account["tasks"] == {"SUCCEEDED": len(GOOD_OUTPUTS), "CANCELED": 1}
        for name in GOOD_OUTPUTS:
            assert (out / name).stat().st_size > 0


async def test_missing_api_key_names_the_variable(inputs: Path, tmp_path: Path) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    done = await _run(_command(manifest, tmp_path / "out"), env)
    assert done.returncode == 2
    # Words for a shell, not for Python code.
    assert "export DASHSCOPE_API_KEY=sk-..." in done.stderr.decode()
    assert "--api-key-file" in done.stderr.decode()
    assert b"EmoClient(" not in done.stderr
    assert b"Traceback" not in done.stderr


async def test_refused_api_key_stops_before_any_job(inputs: Path, tmp_path: Path) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    config = EmulatorConfig.fast(api_keys=frozenset({"sk-right"}))
    async with serve(config) as emulator:
        done = await _run(_command(manifest, tmp_path / "out"), _env(emulator, key="sk-wrong"))
    report = done.stderr.decode()
    assert done.returncode == 2
    assert "the service refused the API key" in report
    assert "InvalidApiKey" in report
    assert "Check DASHSCOPE_API_KEY" in report
    # Nothing was journaled: a rerun with the right key starts from scratch.
    assert not (tmp_path / "out").exists()


async def test_unusable_output_folder_or_journal_is_a_message_not_a_traceback(
    inputs: Path, tmp_path: Path
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("a file, not a folder")
    garbage = tmp_path / "journal.sqlite3"
    garbage.write_text("not a database")
    async with serve(EmulatorConfig.fast()) as emulator:
        env = _env(emulator)
        bad_out = await _run(_command(manifest, not_a_folder / "out"), env)
        bad_journal = await _run(
            _command(manifest, tmp_path / "out", "--journal", str(garbage)), env
        )
        assert (await _account(emulator))["submissions"] == 0
    assert bad_out.returncode == 2
    assert b"cannot write into" in bad_out.stderr
    assert bad_journal.returncode == 2  # found before anything started
    assert f"cannot use {garbage} as a journal".encode() in bad_journal.stderr
    for done in (bad_out, bad_journal):
        assert b"Traceback" not in done.stderr


async def test_several_keys_from_a_file_spread_the_jobs_over_their_accounts(
    inputs: Path, tmp_path: Path
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    keys = tmp_path / "keys.txt"
    keys.write_text("# two accounts\nsk-file-one\n\nsk-file-two=second\n")
    async with serve(EmulatorConfig.fast()) as emulator:
        done = await _run(
            _command(manifest, tmp_path / "out", "--api-key-file", str(keys), "--store", "memory"),
            _env(emulator, key="sk-unused"),
        )
        accounts = (await emulator.stats())["accounts"]
    assert done.returncode == 0, done.stderr.decode()
    submissions = sorted(a["submissions"] for a in accounts.values())
    assert len(submissions) == 2
    assert min(submissions) >= 1  # both accounts worked
    assert sum(submissions) == len(GOOD_OUTPUTS)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "holds no key"),
        ("sk-secret-one=\n", "line 1"),
        ("sk secret\n", "line 1"),
    ],
)
async def test_a_bad_key_file_is_a_message_without_the_key(
    inputs: Path, tmp_path: Path, content: str, message: str
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    keys = tmp_path / "keys.txt"
    keys.write_text(content)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    done = await _run(_command(manifest, tmp_path / "out", "--api-key-file", str(keys)), env)
    assert done.returncode == 2
    assert message.encode() in done.stderr
    assert b"secret" not in done.stderr
    assert b"Traceback" not in done.stderr


async def test_a_bad_store_is_a_message(inputs: Path, tmp_path: Path) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS)
    env = {**os.environ, "DASHSCOPE_API_KEY": "sk-x"}
    done = await _run(_command(manifest, tmp_path / "out", "--store", "memroy"), env)
    assert done.returncode == 2
    assert b"memroy" in done.stderr
    assert b"Traceback" not in done.stderr


async def test_transient_failures_are_shown_as_they_happen_and_the_hint_retries_them(
    inputs: Path, tmp_path: Path
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS.splitlines(keepends=True)[0])
    out = tmp_path / "out"
    # Every task fails with the service's own error: resubmitted (as often as the options
    # allow), then failed.
    async with serve(EmulatorConfig.fast(speed=200.0, faults={"task_failure_rate": 1.0})) as emu:
        done = await _run(_command(manifest, out), _env(emu))
        report = done.stderr.decode()
        assert done.returncode == 1, report
        lines = report.splitlines()
        # Each resubmission and the failure have a line of their own while the run goes on...
        resubmitted = [
            line for line in lines if "row 2: task" in line and "submitted again" in line
        ]
        assert len(resubmitted) == SchedulerOptions().resubmits
        failed = next(i for i, line in enumerate(lines) if "row 2: FAILED InternalError" in line)
        assert failed < lines.index("1 job(s) did not produce a video:")
        # ...the closing block names the task, the summary the resubmissions, and the hint
        # is the exact command.
        block = lines[lines.index("1 job(s) did not produce a video:") + 1]
        assert block.startswith("  row 2 · failed · InternalError")
        assert " · task " in block
        resubmits = SchedulerOptions().resubmits
        assert f"{resubmits} task(s) failed on the service's side and were submitted" in report
        assert "may pass on another try" in report
        hint = lines[lines.index(next(x for x in lines if x.endswith("Try them again with:"))) + 1]
        command = shlex.split(hint)
        batch_args = command[command.index("batch") :]
        assert batch_args == ["batch", str(manifest), "--out", str(out), "--retry-failed"]

        # The hinted command, once the service is well again, renders the job.
        emu.set_faults(task_failure_rate=0.0)
        again = await _run([sys.executable, "-m", "emoclient", *batch_args], _env(emu))
        assert again.returncode == 0, again.stderr.decode()
        assert (out / "one.mp4").stat().st_size > 0


async def test_verbose_logs_the_library_to_stderr_without_the_key(
    inputs: Path, tmp_path: Path
) -> None:
    manifest = _manifest(inputs, tmp_path, GOOD_ROWS.splitlines(keepends=True)[0])
    key = "sk-verbose-secret-4242"
    async with serve(EmulatorConfig.fast(speed=200.0)) as emulator:
        command = [
            sys.executable,
            "-m",
            "emoclient",
            "-vv",
            *_command(manifest, tmp_path / "o")[3:],
        ]
        done = await _run(command, _env(emulator, key=key))
    report = done.stderr.decode()
    assert done.returncode == 0, report
    assert "emoclient DEBUG]" in report
    assert "POST " in report  # the requests themselves
    assert key not in report
    assert key[3:] not in report
