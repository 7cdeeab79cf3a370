from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emoclient._batch.checks import plan_batch, preflight
from emoclient._batch.jobs import EmojiJob, EmoJob, job_key, output_name
from emoclient.emulator.samples import make_portrait, make_speech


@pytest.fixture
def portrait(tmp_path: Path) -> Path:
    return make_portrait(tmp_path / "face.png", width=600, height=800)


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    return make_speech(tmp_path / "voice.wav", seconds=2.5)


async def test_good_local_job_has_no_problems(portrait: Path, speech: Path) -> None:
    assert await preflight(EmoJob(image=portrait, audio=speech)) == []
    assert await preflight(EmojiJob(image=str(portrait), driven_id="mengwa_kaixin")) == []


async def test_url_inputs_are_not_fetched() -> None:
    job = EmoJob(image="https://example.invalid/a.png", audio="oss://bucket/x.mp3")
    assert await preflight(job) == []


async def test_small_image_and_long_audio_are_reported(tmp_path: Path) -> None:
    image = make_portrait(tmp_path / "small.jpg", width=300, height=500, fmt="jpeg")
    audio = make_speech(tmp_path / "long.wav", seconds=61)
    problems = await preflight(EmoJob(image=image, audio=audio, label="row 7"))
    assert [(p.job_label, p.field) for p in problems] == [("row 7", "image"), ("row 7", "audio")]
    assert "300x500" in problems[0].message
    assert "61.0 s" in problems[1].message


async def test_missing_and_unreadable_files_are_reported(tmp_path: Path, speech: Path) -> None:
    bogus = tmp_path / "notes.png"
    bogus.write_text("not an image")
    problems = await preflight(EmoJob(image=bogus, audio=tmp_path / "missing.mp3"))
    assert [p.field for p in problems] == ["image", "audio"]
    assert "does not exist" in problems[1].message


def test_job_validation() -> None:
    with pytest.raises(ValidationError, match="driven_id"):
        EmojiJob(image="a.png", driven_id="nope")
    with pytest.raises(ValidationError, match="both face_bbox and ext_bbox"):
        EmoJob(image="a.png", audio="b.wav", face_bbox=(1, 1, 5, 5))
    with pytest.raises(ValidationError, match=r"face_bbox .* 0 <= x1 < x2"):
        EmoJob(image="a.png", audio="b.wav", face_bbox=(5, 1, 1, 5), ext_bbox=(0, 0, 9, 9))
    with pytest.raises(ValidationError, match="output"):
        EmoJob(image="a.png", audio="b.wav", output="../escape.mp4")
    with pytest.raises(ValidationError):
        EmoJob(image="a.png", audio="b.wav", style_level="wild")


@pytest.fixture
def copy(tmp_path: Path, portrait: Path) -> Path:
    out = tmp_path / "copy.png"
    out.write_bytes(portrait.read_bytes())
    return out


async def test_job_key_follows_content_not_path(portrait: Path, copy: Path) -> None:
    first = await job_key(EmojiJob(image=portrait, driven_id="mengwa_kaixin", label="a"))
    same = await job_key(EmojiJob(image=copy, driven_id="mengwa_kaixin", label="b"))
    other = await job_key(EmojiJob(image=portrait, driven_id="mengwa_kun_1"))
    assert first == same != other
    name = output_name(EmojiJob(image=portrait, driven_id="mengwa_kaixin"), first)
    assert name == f"face-mengwa_kaixin-{first[:8]}.mp4"


async def test_plan_adds_up_billed_seconds_and_cost(
    tmp_path: Path, portrait: Path, speech: Path
) -> None:
    tiny = make_portrait(tmp_path / "tiny.png", width=100, height=100)
    jobs = [
        EmoJob(image=portrait, audio=speech),
        EmoJob(
            image=portrait, audio=speech, ratio="3:4", face_bbox=(1, 1, 2, 2), ext_bbox=(0, 0, 3, 4)
        ),
        EmoJob(image=tiny, audio=speech, label="row 4"),
        EmoJob(image=portrait, audio="https://example.invalid/a.mp3"),
    ]
    plan = await plan_batch(jobs)
    assert len(plan.jobs) == 4
    assert [p.job_label for p in plan.problems] == ["row 4"]
    assert plan.billed_seconds == pytest.approx(5.0, abs=0.01)
    assert plan.unknown_length == 1
    assert plan.detect_calls == 2
    assert plan.estimated_cost_cny == pytest.approx(2.5 * 0.08 + 2.5 * 0.16 + 2 * 0.004, abs=1e-3)
