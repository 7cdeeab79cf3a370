"""Logging: retries at INFO, give-ups at WARNING, requests at DEBUG; never a key or a
signature; ``EMOCLIENT_LOG`` switches a stderr handler on."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_support import make_client, portrait, speech

from emoclient import ServerError
from emoclient._log import logger
from emoclient.emulator import RunningEmulator

SECRET = "sk-log-secret-0123456789abcdef"
_RID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def env_handler_removed() -> Iterator[None]:
    """Undo what EMOCLIENT_LOG does to the process-wide logger."""
    before = list(logger.handlers)
    yield
    for handler in logger.handlers:
        if handler not in before:
            logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


async def test_a_whole_run_logs_neither_the_key_nor_a_signature(
    emulator: RunningEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(error_rate={"task_get": 0.5, "oss_upload": 0.5}, seed=1)
    with caplog.at_level(logging.DEBUG, logger="emoclient"):
        async with make_client(emulator, api_key=SECRET) as client:
            await client.generate_emo(
                portrait(tmp_path), speech(tmp_path), out=tmp_path / "out.mp4"
            )
    lines = [record.getMessage() for record in caplog.records]
    assert any("retrying in" in line for line in lines)  # the faults did strike
    assert any(
        re.search(rf"GET \S+/tasks/\S+ -> 200 in .* \[request_id={_RID}\]", m) for m in lines
    )
    assert any(re.search(r"GET \S+/results/\S+\.mp4 -> 200", line) for line in lines)
    for line in lines:
        assert SECRET not in line
        assert SECRET[3:] not in line
        assert not re.search(r"Signature=|Expires=|OSSAccessKeyId=", line), line


async def test_each_retry_and_the_give_up_are_logged(
    emulator: RunningEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.set_faults(error_rate={"task_get": 1.0})
    with caplog.at_level(logging.INFO, logger="emoclient"):
        async with make_client(emulator) as client:
            with pytest.raises(ServerError):
                await client.get_task("t-9")
    retries = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage().split(" failed")[0] for r in retries] == [
        f"querying task t-9: attempt {n} of 4" for n in (1, 2, 3)
    ]
    for record in retries:
        assert re.search(
            rf"\(HTTP 50[03] \S+, request_id={_RID}\); retrying in \d", record.getMessage()
        )
    (give_up,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert give_up.getMessage().startswith("querying task t-9: giving up after 4 attempts")


async def test_emoclient_log_switches_on_a_stderr_handler(
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env_handler_removed: None,
) -> None:
    monkeypatch.setenv("EMOCLIENT_LOG", "debug")
    async with make_client(emulator, api_key=SECRET) as client:
        await client.get_task("t-1")
        make_client(emulator)  # a second client adds no second handler
    err = capsys.readouterr().err
    assert re.search(rf"emoclient DEBUG\] GET \S+/tasks/t-1 -> 200 .*request_id={_RID}", err)
    assert err.count("/tasks/t-1 -> 200") == 1
    assert SECRET not in err


async def test_emoclient_log_info_leaves_out_the_request_lines(
    emulator: RunningEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env_handler_removed: None,
) -> None:
    monkeypatch.setenv("EMOCLIENT_LOG", "info")
    emulator.set_faults(error_rate={"task_get": 1.0})
    async with make_client(emulator) as client:
        with pytest.raises(ServerError):
            await client.get_task("t-1")
    err = capsys.readouterr().err
    assert "emoclient INFO] querying task t-1: attempt 1 of 4 failed" in err
    assert "emoclient WARNING] querying task t-1: giving up" in err
    assert "DEBUG" not in err


def test_importing_emoclient_configures_no_logging() -> None:
    code = "import logging, emoclient; print(logging.getLogger('emoclient').handlers)"
    env = {**os.environ, "EMOCLIENT_LOG": "debug"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"
