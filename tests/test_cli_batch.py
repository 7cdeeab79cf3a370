"""``emoclient batch`` as a user runs it: a subprocess against an emulator on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emoclient.emulator.samples import make_portrait, make_speech

HEADER = "image,audio,driven_id,style_level,ratio,output\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with two portraits and two short speech clips."""
    folder = tmp_path_factory.mktemp("inputs")
    for i in (1, 2):
        make_portrait(folder / f"face{i}.png", seed=i, width=480, height=640)
        make_speech(folder / f"voice{i}.wav", seconds=1.0 + i / 2, seed=i)
    make_portrait(folder / "tiny.png", seed=3, width=300, height=300)
    return folder


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emoclient", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def test_dry_run_prints_the_plan_and_row_problems(inputs: Path) -> None:
    manifest = inputs / "plan.csv"
    manifest.write_text(
        HEADER
        + "face1.png,voice1.wav,,,,a.mp4\n"  # row 2: 1.5 s EMO
        + "face2.png,voice2.wav,,calm,3:4,\n"  # row 3: 2.0 s EMO 3:4
        + "face1.png,,mengwa_kaixin,,,\n"  # row 4: Emoji
        + "face1.png,voice1.wav,jingdian_lei,,,\n"  # row 5: both
        + "tiny.png,voice1.wav,,,,\n"  # row 6: too small (preflight)
    )
    done = _cli("batch", str(manifest), "--out", str(inputs / "never"), "--dry-run")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "3 video(s) to render (2 EMO, 1 Emoji), 2 row(s) with problems" in out
    assert "tiny.png +" not in out  # a rejected row is not in the list of videos
    assert "row 5, driven_id: a row has either audio" in out
    assert "row 6, image:" in out
    assert "is 300x300 px; each side must be 400-7000 px" in out
    assert "Dry run: nothing was submitted." in out
    assert not (inputs / "never").exists()

    done = _cli("batch", str(manifest), "--out", str(inputs / "never"), "--dry-run", "--json")
    plan = json.loads(done.stdout)
    assert plan["jobs"] == 3
    assert len(plan["problems"]) == 2
    # 1.5 s at 0.08 + 2.0 s at 0.16 (3:4) + an Emoji template estimate, + detection calls
    assert plan["billed_seconds"] > 3.5
    assert plan["estimated_cost_cny"] > 0.4
    assert plan["detect_calls"] == 3


def test_dry_run_of_a_clean_manifest_exits_zero(inputs: Path) -> None:
    manifest = inputs / "clean.jsonl"
    manifest.write_text(json.dumps({"image": "face2.png", "driven_id": "dagong_weixiao"}) + "\n")
    done = _cli("batch", str(manifest), "--out", str(inputs / "never"), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 video(s) to render (0 EMO, 1 Emoji), 0 row(s)" in done.stdout


def test_unreadable_manifest_is_a_clear_error(tmp_path: Path) -> None:
    done = _cli("batch", str(tmp_path / "nope.csv"), "--out", str(tmp_path), "--dry-run")
    assert done.returncode == 2
    assert "cannot open the manifest" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("window", "message"),
    [("0", "must be 1 or more, not 0"), ("1.5", "must be a whole number, not '1.5'")],
)
def test_a_bad_window_is_a_usage_error_naming_the_flag(
    tmp_path: Path, window: str, message: str
) -> None:
    done = _cli("batch", str(tmp_path / "m.csv"), "--out", str(tmp_path), "--window", window)
    assert done.returncode == 2
    assert f"argument --window: {message}" in done.stderr


def test_errors_inside_a_group_are_each_a_message_not_a_traceback() -> None:
    from emoclient import JournalError, StoreUnavailableError
    from emoclient._cli._common import expected_failures

    group = ExceptionGroup(
        "two", [JournalError("journal broke"), ExceptionGroup("one", [StoreUnavailableError("x")])]
    )
    assert [str(e) for e in expected_failures(group)] == ["journal broke", "x"]
    assert expected_failures(ExceptionGroup("bug", [KeyError("k"), OSError("disk")])) == []
