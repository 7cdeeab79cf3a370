"""The single-call commands of the ``emoclient`` CLI against the emulator."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from client_support import new_key, portrait, speech

from emoclient._cli import main
from emoclient.emulator import RunningEmulator


@pytest.fixture
def env(emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch) -> RunningEmulator:
    monkeypatch.setenv("DASHSCOPE_API_KEY", new_key())
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", emulator.base_url)
    return emulator


async def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    # The commands call anyio.run themselves, so they run in a worker thread here.
    code = await anyio.to_thread.run_sync(partial(main, list(argv)))
    out, err = capsys.readouterr()
    return code, json.loads(out if code == 0 else err)


async def test_detect_submit_wait_download(
    env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, voice = portrait(tmp_path), speech(tmp_path)
    code, detection = await _run(capsys, "detect", str(image), "--ratio", "3:4")
    assert code == 0
    assert detection["passed"] is True
    assert detection["ratio"] == "3:4"
    code, submitted = await _run(capsys, "submit", "emo", str(image), str(voice))
    assert code == 0
    assert submitted["status"] == "PENDING"
    code, task = await _run(capsys, "wait", submitted["task_id"], "--poll-interval", "0.05")
    assert code == 0
    assert task["status"] == "SUCCEEDED"
    code, status = await _run(capsys, "status", submitted["task_id"])
    assert status["video_url"] == task["video_url"]
    code, saved = await _run(capsys, "download", task["video_url"], str(tmp_path / "v.mp4"))
    assert code == 0
    assert (await anyio.Path(saved["path"]).stat()).st_size > 0


async def test_emoji_submit_and_upload(
    env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = portrait(tmp_path)
    code, detection = await _run(capsys, "detect", str(image), "--model", "emoji")
    assert detection["model"] == "emoji-detect-v1"
    code, uploaded = await _run(capsys, "upload", str(image), "--model", "emoji-v1")
    assert uploaded["url"].startswith("oss://")
    boxes = ["--face-bbox", ",".join(map(str, detection["face_bbox"]))]
    boxes += ["--ext-bbox", ",".join(map(str, detection["ext_bbox"]))]
    code, submitted = await _run(
        capsys, "submit", "emoji", uploaded["url"], "--driven-id", "jingdian_lei", *boxes
    )
    assert code == 0
    assert submitted["model"] == "emoji-v1"


async def test_errors_are_json_on_stderr(
    env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, error = await _run(capsys, "cancel", "no-such-task")
    assert code == 1
    assert error["error"] == "BadRequestError"
    code, error = await _run(capsys, "submit", "emoji", str(portrait(tmp_path)))
    assert code == 1
    assert "--driven-id" in error["message"]
    code, error = await _run(capsys, "wait", "gone")
    assert error["error"] == "TaskExpiredError"


async def test_submit_without_its_inputs_stops_before_a_billed_detection(
    env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(portrait(tmp_path))
    code, error = await _run(capsys, "submit", "emoji", image)
    assert code == 1
    assert "--driven-id" in error["message"]
    code, error = await _run(capsys, "submit", "emo", image)
    assert code == 1
    assert "AUDIO" in error["message"]
    stats = await env.stats()
    assert all("detect" not in route for a in stats["accounts"].values() for route in a["routes"])


async def test_submit_of_a_rejected_portrait_reports_the_detection(
    env: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(portrait(tmp_path, fail="InvalidFile.FullFace"))
    code, error = await _run(capsys, "submit", "emo", image, str(speech(tmp_path)))
    assert code == 1
    assert error["error"] == "DetectionFailedError"
    assert "InvalidFile.FullFace" in error["message"]
    assert image in error["message"]


def test_the_emulator_without_its_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    from emoclient._cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "av" else real(name, *a)
    )
    assert main(["emulator", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "PyAV is missing" in err
    assert "emoclient[emulator]" in err
