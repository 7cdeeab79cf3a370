"""Bad inputs and faults as a Python caller meets them (rows of docs/reliability.md).

The cases here are those no other test pins down: each raises one exception type whose
message names the thing that is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from client_support import make_client, portrait, speech
from pydantic import ValidationError

from emoclient import (
    BadRequestError,
    EmoJob,
    TaskFailedError,
    UploadError,
    WaitTimeoutError,
)
from emoclient.emulator import EmulatorConfig, RunningEmulator


def test_a_job_with_an_unknown_ratio_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="ratio") as caught:
        EmoJob(image="face.png", audio="voice.wav", ratio="16:9")
    assert "'1:1' or '3:4'" in str(caught.value)


async def test_detection_with_an_unknown_ratio_is_refused_before_sending(
    emulator: RunningEmulator,
) -> None:
    async with make_client(emulator) as client:
        with pytest.raises(ValueError, match=r"ratio='16:9' is not one of: 1:1, 3:4"):
            await client.detect_emo("https://example.com/face.png", ratio="16:9")
    assert (await emulator.stats())["accounts"] == {}  # nothing reached the service


async def test_an_upload_for_an_unknown_model_is_refused_before_sending(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with make_client(emulator) as client:
        with pytest.raises(ValueError, match="'wan-v1' is not a valid Model"):
            await client.upload(speech(tmp_path), model="wan-v1")
    assert (await emulator.stats())["accounts"] == {}


async def test_generate_with_a_missing_audio_file_names_it(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with make_client(emulator) as client:
        with pytest.raises(UploadError, match=r"Cannot read .*missing\.wav: No such file"):
            await client.generate_emo(portrait(tmp_path), tmp_path / "missing.wav", out="x.mp4")


async def test_generate_with_audio_the_service_refuses_raises_the_service_error(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """The service's refusal comes out as itself, not inside an ExceptionGroup."""
    song = tmp_path / "song.ogg"
    song.write_bytes(b"OggS" + bytes(200))
    async with make_client(emulator) as client:
        with pytest.raises(BadRequestError, match="File type is not supported") as caught:
            await client.generate_emo(portrait(tmp_path), song, out=tmp_path / "x.mp4")
    assert caught.value.code == "InvalidURL"


@pytest.mark.parametrize(
    "emulator_config", [EmulatorConfig.fast(faults={"task_failure_rate": 1.0})]
)
async def test_generate_of_a_task_that_fails_raises_task_failed(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    """README's ``except TaskFailedError`` around generate_emo catches it."""
    async with make_client(emulator) as client:
        with pytest.raises(TaskFailedError) as caught:
            await client.generate_emo(portrait(tmp_path), speech(tmp_path), out=tmp_path / "x.mp4")
    assert caught.value.code == "InternalError.Algo"
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("emulator_config", [EmulatorConfig.fast(speed=0.0)])
async def test_generate_past_its_wait_timeout_raises_wait_timeout(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    async with make_client(emulator) as client:
        with pytest.raises(WaitTimeoutError, match="keeps running server-side"):
            await client.generate_emoji(
                portrait(tmp_path), "mengwa_kaixin", out=tmp_path / "x.mp4", wait_timeout=0.2
            )


@pytest.mark.parametrize("task_id", ["", "a85/cancel", "a85 ", "a85?page_no=2"])
async def test_a_task_id_that_would_name_another_route_is_refused_before_sending(
    emulator: RunningEmulator, task_id: str
) -> None:
    """``get_task("")`` used to ask for ``tasks/``, the task list, and call its answer garbled."""
    async with make_client(emulator) as client:
        with pytest.raises(ValueError, match="is not a task id; pass the task_id a submit"):
            await client.get_task(task_id)
        with pytest.raises(ValueError, match="is not a task id"):
            await client.cancel(task_id)
        with pytest.raises(ValueError, match="is not a task id"):
            await client.wait(task_id, timeout=5)
    assert (await emulator.stats())["accounts"] == {}
